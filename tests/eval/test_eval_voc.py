import math

import numpy as np
import pytest

from pydetect import Detections
from pydetect import eval as pdeval
from pydetect.data import DetectionDataset


def _dataset():
    img = np.zeros((100, 100, 3), np.uint8)
    targets = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0], "difficult": [False, True]},
        {"boxes": [[0, 0, 10, 10]], "labels": [0]},
    ]
    return DetectionDataset([img, img], targets, ["a", "b"])


def _detections():
    return [
        Detections([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 0, 0]),
        Detections([[50, 50, 60, 60], [0, 0, 10, 9]], [0.6, 0.5], [0, 0]),
    ]


def test_hand_worked_all_point_and_11_point():
    # By score: TP (a), FP (a again), ignored (difficult), FP, TP (c); 2 positives.
    # recall .5 .5 .5 .5 1, precision 1 .5 .5 1/3 .5.
    out = pdeval.voc_evaluate(_dataset(), _detections())
    np.testing.assert_allclose(out["recall"]["a"], [.5, .5, .5, .5, 1])
    np.testing.assert_allclose(out["precision"]["a"], [1, .5, .5, 1 / 3, .5])
    assert out["AP"]["a"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)        # envelope 1 up to .5, then .5
    assert math.isnan(out["AP"]["b"]) and out["n_positives"]["b"] == 0
    assert out["mAP"] == pytest.approx(0.75)                              # classes without positives left out
    out07 = pdeval.voc_evaluate(_dataset(), _detections(), use_07_metric=True)
    assert out07["AP"]["a"] == pytest.approx((6 * 1 + 5 * 0.5) / 11)     # t = 0..0.5 -> 1, t = .6..1 -> .5


def test_threshold_is_strict_and_boxes_continuous():
    # IoU of [0,0,10,5] with [0,0,10,10] is exactly 0.5 without the +1 convention (0.545 with it):
    # not a hit at 0.5 (strict >), a hit at 0.49.
    ds = DetectionDataset([np.zeros((20, 20), np.uint8)], [{"boxes": [[0, 0, 10, 10]], "labels": [0]}], ["a"])
    dets = [Detections([[0, 0, 10, 5]], [1.0], [0])]
    assert pdeval.voc_evaluate(ds, dets)["AP"]["a"] == 0.0
    assert pdeval.voc_evaluate(ds, dets, iou_threshold=0.49)["AP"]["a"] == pytest.approx(1.0)


def test_no_detections_and_other_class():
    out = pdeval.voc_evaluate(_dataset(), [Detections(), Detections([[0, 0, 10, 10]], [0.3], [1])])
    assert out["AP"]["a"] == 0.0 and math.isnan(out["AP"]["b"])


def test_voc_ap_direct():
    # Perfect detector: AP 1 both ways; half recall at full precision: .5 and 6/11.
    assert pdeval.voc_ap([0.5, 1.0], [1.0, 1.0]) == pytest.approx(1.0)
    assert pdeval.voc_ap([0.5, 1.0], [1.0, 1.0], use_07_metric=True) == pytest.approx(1.0)
    assert pdeval.voc_ap([0.5], [1.0]) == pytest.approx(0.5)
    assert pdeval.voc_ap([0.5], [1.0], use_07_metric=True) == pytest.approx(6 / 11)
    with pytest.raises(ValueError, match="same shape"):
        pdeval.voc_ap([0.5, 1], [1.0])


def test_bad_input():
    with pytest.raises(ValueError, match="one Detections per"):
        pdeval.voc_evaluate(_dataset(), _detections()[:1])
    with pytest.raises(ValueError, match="labels"):
        pdeval.voc_evaluate(_dataset(), [Detections([[0, 0, 1, 1]], [1], [5]), Detections()])
    with pytest.raises(ValueError, match="iou_threshold"):
        pdeval.voc_evaluate(_dataset(), _detections(), iou_threshold=1.5)


def test_proposal_recall_hand_worked():
    img = np.zeros((50, 50), np.uint8)
    ds = DetectionDataset([img, img],
                          [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 40]], "labels": [0, 1]},
                           {"boxes": [[0, 0, 10, 10], [30, 30, 31, 31]], "labels": [0, 0], "iscrowd": [False, True]}],
                          ["a", "b"])
    props = [np.array([[0, 0, 10, 10], [20, 20, 40, 30]], np.float32),  # IoU 1 with a, 0.5 with b
             np.array([[0, 0, 10, 8], [45, 45, 50, 50]], np.float32)]  # IoU 0.8 with a; crowd ignored
    out = pdeval.proposal_recall(props, ds, iou_thresholds=[0.5, 0.7, 0.9])
    np.testing.assert_allclose(out["best_iou"], [1.0, 0.5, 0.8])
    np.testing.assert_allclose(out["recall"], [1.0, 2 / 3, 1 / 3])
    assert out["ABO"] == {"a": pytest.approx(0.9), "b": pytest.approx(0.5)}
    assert out["MABO"] == pytest.approx(0.7)
    top1 = pdeval.proposal_recall(props, ds, iou_thresholds=[0.5], max_proposals=1)
    np.testing.assert_allclose(top1["best_iou"], [1.0, 0.0, 0.8])
    none = pdeval.proposal_recall([np.zeros((0, 4)), Detections()], ds, iou_thresholds=[0.5])
    assert none["recall"].tolist() == [0.0] and none["MABO"] == 0.0
    with pytest.raises(ValueError, match="proposals"):
        pdeval.proposal_recall(props[:1], ds)


def test_oracle_on_builtin_dataset_scores_one():
    pytest.importorskip("sklearn", reason="the built-in digits come from scikit-learn")
    from pydetect.data import digits_in_clutter

    ds = digits_in_clutter("test", n_images=25, seed=0)
    oracle = [Detections(t["boxes"], np.linspace(1, 0.5, len(t["boxes"])), t["labels"]) for t in ds.targets]
    voc = pdeval.voc_evaluate(ds, oracle)
    assert voc["mAP"] == pytest.approx(1.0)
    coco = pdeval.coco_evaluate(ds, oracle)
    assert coco["AP"] == pytest.approx(1.0) and coco["AR100"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in coco["per_class"].values() if v >= 0)
    rec = pdeval.proposal_recall([t["boxes"] for t in ds.targets], ds)
    assert rec["recall"].tolist() == [1.0] * 10 and rec["MABO"] == pytest.approx(1.0)
    # Dropping every detection of class "3" costs exactly that class's AP.
    partial = [d[d.labels != 3] for d in oracle]
    voc = pdeval.voc_evaluate(ds, partial)
    assert voc["AP"]["3"] == 0.0 and voc["mAP"] == pytest.approx(0.9)
