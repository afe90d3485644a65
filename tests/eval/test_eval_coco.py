import copy
import json

import numpy as np
import pytest

import _reference_eval as ref
from pydetect import Detections
from pydetect import eval as pdeval
from pydetect.data import DetectionDataset

pycocotools = pytest.importorskip("pycocotools", reason="parity is checked against pycocotools")


def _assert_same(gt, results):
    ours = pdeval.coco_evaluate(gt, results, return_arrays=True)
    stats, precision, recall = ref.pycocotools_eval(gt, results)
    np.testing.assert_allclose(ours["stats"], stats, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours["precision"], precision)
    np.testing.assert_array_equal(ours["recall"], recall)
    return ours, stats


@pytest.mark.parametrize("seed", range(12))
def test_parity_random(seed):
    rng = np.random.default_rng(seed)
    gt, results = ref.random_coco_problem(rng, n_images=int(rng.integers(1, 25)), n_cats=int(rng.integers(1, 5)),
                                          crowd_p=0.15, tie_decimals=int(rng.integers(1, 3)))
    _assert_same(gt, results)


@pytest.mark.parametrize("seed", range(3))
def test_parity_more_than_100_detections(seed):
    rng = np.random.default_rng(100 + seed)
    gt, results = ref.random_coco_problem(rng, n_images=8, n_cats=3, many_dets=True, tie_decimals=1)
    _assert_same(gt, results)


def test_parity_all_crowd_and_annotation_id_zero():
    rng = np.random.default_rng(7)
    gt, results = ref.random_coco_problem(rng, n_images=10, n_cats=3, crowd_p=0.6)
    gt["annotations"][0]["id"] = 0  # pycocotools treats a match to id 0 as no match
    _assert_same(gt, results)


def test_parity_no_detections_and_no_gt():
    rng = np.random.default_rng(3)
    gt, results = ref.random_coco_problem(rng, n_images=5, n_cats=2)
    ours, stats = _assert_same(gt, [])
    assert ours["AP"] == 0.0
    empty_gt = dict(gt, annotations=[])
    ours = pdeval.coco_evaluate(empty_gt, results)
    assert ours["AP"] == -1.0 and ours["AR100"] == -1.0


def test_hand_worked():
    # One image, one category: gt A matched by the 0.9 detection (IoU 1), a 0.8 false
    # positive; gt B missed. Precision at recall 0.5 is 1 -> AP at every threshold:
    # recall points 0..0.5 have precision 1 (51 of 101), the rest 0.
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "x"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 200, 50, 50], "area": 2500, "iscrowd": 0}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [400, 400, 10, 10], "score": 0.8}]
    out = pdeval.coco_evaluate(gt, res)
    assert out["AP"] == pytest.approx(51 / 101, abs=1e-12)
    assert out["AR100"] == pytest.approx(0.5) and out["AR1"] == pytest.approx(0.5)
    assert out["APl"] == pytest.approx(1.0)   # only the 100x100 gt is large, and it is found
    assert out["APm"] == pytest.approx(0.0)   # the medium gt is missed
    assert out["per_class"] == {"x": pytest.approx(51 / 101)}


def _dataset_and_dets(rng, n=15):
    images, targets, dets = [], [], []
    for i in range(n):
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, size=(k, 2))
        wh = rng.uniform(5, 120, size=(k, 2))
        boxes = np.hstack([xy, xy + wh]).astype(np.float32)
        labels = rng.integers(0, 3, size=k)
        crowd = rng.random(k) < 0.1
        images.append(np.zeros((330, 330, 3), np.uint8))
        targets.append({"boxes": boxes, "labels": labels, "iscrowd": crowd})
        m = int(rng.integers(0, 8))
        db = np.vstack([boxes + rng.normal(0, 6, size=boxes.shape), rng.uniform(0, 250, size=(m, 4))]).astype(np.float32)
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dl = np.concatenate([labels, rng.integers(0, 3, size=m)])
        ds = np.round(rng.random(len(db)), 2).astype(np.float32)
        dets.append(Detections(db, ds, dl))
    return DetectionDataset(images, targets, ["a", "b", "c"], image_ids=rng.permutation(100)[:n]), dets


def _to_coco(ds, dets):
    gt = {"images": [{"id": int(i)} for i in ds.image_ids],
          "categories": [{"id": c, "name": n} for c, n in zip(ds.category_ids, ds.class_names)], "annotations": []}
    for i, t in enumerate(ds.targets):
        for b, lab, cr in zip(t["boxes"].astype(np.float64), t["labels"], t["iscrowd"]):
            w, h = b[2] - b[0], b[3] - b[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": int(ds.image_ids[i]),
                                      "category_id": ds.category_ids[lab], "bbox": [b[0], b[1], w, h],
                                      "area": w * h, "iscrowd": int(cr)})
    res = []
    for i, d in enumerate(dets):
        for b, s, lab in zip(d.boxes.astype(np.float64), d.scores.astype(np.float64), d.labels):
            res.append({"image_id": int(ds.image_ids[i]), "category_id": ds.category_ids[lab],
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    return gt, res


@pytest.mark.parametrize("seed", range(3))
def test_dataset_and_detections_input(seed):
    ds, dets = _dataset_and_dets(np.random.default_rng(seed))
    gt, res = _to_coco(ds, dets)
    ours = pdeval.coco_evaluate(ds, dets)
    stats, _, _ = ref.pycocotools_eval(gt, res)
    np.testing.assert_allclose(ours["stats"], stats, rtol=0, atol=1e-12)
    # The dataset with COCO results, and JSON files on disk, give the same.
    np.testing.assert_array_equal(pdeval.coco_evaluate(ds, res)["stats"], ours["stats"])


def test_json_paths(tmp_path):
    rng = np.random.default_rng(5)
    gt, res = ref.random_coco_problem(rng, n_images=6, n_cats=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    a = pdeval.coco_evaluate(str(tmp_path / "gt.json"), tmp_path / "res.json")
    b = pdeval.coco_evaluate(gt, res)
    np.testing.assert_array_equal(a["stats"], b["stats"])


def test_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    gt, res = ref.random_coco_problem(rng, n_images=4, n_cats=2)
    bad = copy.deepcopy(res)
    bad.append({"image_id": 123456, "category_id": gt["categories"][0]["id"], "bbox": [0, 0, 1, 1], "score": 0.5})
    with pytest.raises(ValueError, match="image_id"):
        pdeval.coco_evaluate(gt, bad)
    bad = copy.deepcopy(res)
    bad.append({"image_id": gt["images"][0]["id"], "category_id": 999, "bbox": [0, 0, 1, 1], "score": 0.5})
    with pytest.raises(ValueError, match="category_id"):
        pdeval.coco_evaluate(gt, bad)
    bad = [{"image_id": gt["images"][0]["id"], "category_id": gt["categories"][0]["id"], "bbox": [0, 0, 1], "score": 0.5}]
    (tmp_path / "r.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"r\.json.*bbox"):
        pdeval.coco_evaluate(gt, tmp_path / "r.json")
    g2 = copy.deepcopy(gt)
    g2["annotations"].append({"id": 10**6, "image_id": gt["images"][0]["id"], "category_id": 1})
    (tmp_path / "g.json").write_text(json.dumps(g2))
    with pytest.raises(ValueError, match=r"g\.json: annotations\[\d+\]"):
        pdeval.coco_evaluate(tmp_path / "g.json", res)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        pdeval.coco_evaluate(tmp_path / "broken.json", res)
    ds, dets = _dataset_and_dets(np.random.default_rng(0), n=3)
    with pytest.raises(ValueError, match="one Detections per"):
        pdeval.coco_evaluate(ds, dets[:2])
    with pytest.raises(ValueError, match="labels"):
        pdeval.coco_evaluate(ds, dets[:2] + [Detections([[0, 0, 5, 5]], [0.5], [7])])


def test_equal_iou_ties_go_to_the_last_ground_truth():
    # det1 has the same IoU (90/110) with g1 and g2; pycocotools gives it the *last* (g2),
    # which leaves g1 for det2 (IoU 0.82 with g1, 0.54 with g2): two true positives at
    # IoU <= 0.8. Giving det1 g1 instead would make det2 a false positive.
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "x"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [11, 10, 10, 10], "area": 100, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [9, 10, 10, 10], "area": 100, "iscrowd": 0}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [12, 10, 10, 10], "score": 0.8}]
    ours, _ = _assert_same(gt, res)
    assert ours["AP50"] == pytest.approx(1.0)


@pytest.mark.slow
def test_parity_many_random_problems():
    for seed in range(120):
        rng = np.random.default_rng(1000 + seed)
        gt, results = ref.random_coco_problem(
            rng, n_images=int(rng.integers(1, 40)), n_cats=int(rng.integers(1, 6)), max_gt=int(rng.integers(0, 15)),
            crowd_p=float(rng.uniform(0, 0.5)), tie_decimals=int(rng.integers(1, 4)), many_dets=bool(rng.random() < 0.2))
        _assert_same(gt, results)
