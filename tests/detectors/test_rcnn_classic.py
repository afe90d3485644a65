"""RCNN and FastRCNN on selective-search proposals: checks and short learning runs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import _reference_rcnn as ref  # noqa: E402
from _learning import CHECK_AUGMENT  # noqa: E402
from pydetect.data import digits_in_clutter  # noqa: E402
from pydetect.detectors import RCNN, FastRCNN, Pretraining, WarpPretraining  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return (digits_in_clutter("train", n_images=60, seed=21), digits_in_clutter("val", n_images=20, seed=21))


def test_rcnn_learns_shapes_and_round_trips(tmp_path):
    """R-CNN on 40 synthetic images of squares and discs (~35 s): AP50 >= 0.6 on 15
    held-out images (1.0 measured when written). Saved and loaded, it predicts the same."""
    import _shapes

    train, test = _shapes.shapes(40, seed=1), _shapes.shapes(15, seed=2)
    det = RCNN(pretrain=WarpPretraining(seconds=1e9, epochs=10), train_proposals=100, test_proposals=150,
               progress=False, seed=0, augment=CHECK_AUGMENT)
    det.fit(train)
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"RCNN shapes AP50 {ap:.3f}")
    assert ap >= 0.6, f"AP50 {ap:.3f}"
    det.save(tmp_path / "rcnn.pkl")
    again = RCNN.load(tmp_path / "rcnn.pkl").predict(test[0][0])
    np.testing.assert_array_equal(again.boxes, dets[0].boxes)
    np.testing.assert_array_equal(again.scores, dets[0].scores)


@pytest.mark.slow
def test_rcnn_learns_digits(data, tmp_path):
    """R-CNN on 60 digits-in-clutter images (~70 s): AP50 >= RCNN_FLOOR on 20 val images,
    where an untrained detector scores ~0."""
    train, test = data
    det = RCNN(pretrain=WarpPretraining(seconds=1e9, epochs=10), train_proposals=100, test_proposals=150,
               progress=False, seed=0, checkpoint_dir=tmp_path / "ck", augment=CHECK_AUGMENT)
    det.fit(train)
    assert 0.5 <= det.proposal_recall_ <= 1.0
    assert len(det.svms_) == 10
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"RCNN AP50 {ap:.3f}, crop accuracy {det.pretrain_accuracy_:.2f}, recall {det.proposal_recall_:.2f}")
    assert ap >= RCNN_FLOOR, f"AP50 {ap:.3f}"
    assert (tmp_path / "ck" / "proposals.npz").exists()


@pytest.fixture(scope="module")
def digits_small():
    """The split of the FasterRCNN learning check: 80 training images, 40 val images."""
    return digits_in_clutter("train", n_images=80, seed=7), digits_in_clutter("val", n_images=40, seed=7)


@pytest.mark.slow
def test_fast_rcnn_learns_digits(digits_small):
    """A real learning check of Fast R-CNN on the built-in digits_in_clutter data: selective
    search ("fast", 300 proposals) on the 80 training images of the FasterRCNN check, crop
    pretraining for 30 epochs, then FAST_ITERS iterations of 2 images x 64 RoIs, must reach
    AP50 >= FAST_DIGITS_FLOOR on 40 val images (measured value below); an untrained or
    broken detector scores ~0. Slow: Fast R-CNN learns digits more slowly than Faster R-CNN
    (250 iterations, ~75 s, gave AP50 0.006), so the default run keeps the shapes check."""
    train, test = digits_small
    det = FastRCNN(roi_pool="pool", balance_objects=False,
                   pretrain=Pretraining(seconds=1e9, epochs=FAST_PRETRAIN_EPOCHS, copies=2, stretch=None, shear=0.0),
                   train_seconds=1e9, max_iter=FAST_ITERS,
                   train_proposals=300, test_proposals=300, progress=False, seed=0, augment=CHECK_AUGMENT)
    det.fit(train)
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"FastRCNN digits AP50 {ap:.3f}, crop accuracy {det.pretrain_accuracy_:.2f}, recall {det.proposal_recall_:.2f}")
    assert ap >= FAST_DIGITS_FLOOR, f"AP50 {ap:.3f}"


@pytest.mark.parametrize("roi_pool", ["align", "pool"])
def test_fast_rcnn_learns_shapes(roi_pool):
    """Fast R-CNN on selective search, 40 synthetic images of squares and discs, with each
    RoI pooling: AP50 >= 0.6 on 15 held-out images (measured values below)."""
    import _shapes

    train, test = _shapes.shapes(40, seed=1), _shapes.shapes(15, seed=2)
    det = FastRCNN(roi_pool=roi_pool, pretrain=Pretraining(seconds=1e9, epochs=5, copies=2, stretch=None),
                   train_seconds=1e9, max_iter=80, train_proposals=300, test_proposals=200, progress=False, seed=0,
                   augment=CHECK_AUGMENT)
    det.fit(train)
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"FastRCNN AP50 {ap:.3f}, crop accuracy {det.pretrain_accuracy_:.2f}, recall {det.proposal_recall_:.2f}")
    assert ap >= FAST_FLOOR, f"AP50 {ap:.3f}"
    with pytest.raises(ValueError, match="roi_pool"):
        FastRCNN(roi_pool="max", pretrain=None, max_iter=1, progress=False).fit(train.subset([0]))


# Floors leave margin under the values measured when the tests were written (2-core machine
# under load): RCNN on 60 digit images, ~70 s: AP50 0.098; FastRCNN on shapes, ~10 s each:
# 0.987 with RoIAlign, 0.930 with RoI max pooling (2026-11-24); with the slanted crops and
# object-balanced sampling, 0.970 and 0.955 (2026-11-25).
# RCNN on the digits val split (60 train / 20 val images, 2026-12-02): AP50 0.176 without
# augmentation, 0.183 with the default (crop accuracy 0.44, proposal recall 0.74); the floor is
# 80% of it (slow checks). Before the val split: 0.098 on the test split.
RCNN_FLOOR = 0.15
FAST_FLOOR = 0.6
# Fast R-CNN on the digits val split (80 train / 40 val images, 30 pretraining epochs, 800
# iterations, 300 proposals) with the default augmentation, 2026-12-02: AP50 0.198 (crop
# accuracy 0.88, proposal recall 0.88); the floor is 80% of it (slow checks). On the old test
# split without augmentation: 0.064 (2026-11-24) and 0.047 (2026-11-25); 250 iterations gave
# 0.006. FastRCNN on shapes with the default augmentation: 0.903 (RoIAlign), 0.842 (RoI max
# pool); the in-suite floor FAST_FLOOR stays at about 2/3 of the lower one. "The default
# augmentation" here is the default of 2026-12-02, which every check keeps (CHECK_AUGMENT,
# tests/_learning.py): with today's default (colour turns on a quarter of the images) the
# shapes check measured 0.767 / 0.717 (2026-12-03).
FAST_PRETRAIN_EPOCHS = 30
FAST_ITERS = 800
FAST_DIGITS_FLOOR = 0.16
