"""OverFeat: the FC -> conv conversion is exact, the estimator's geometry, merging,
persistence, resume and parameter checks, and a learning check."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect import data, models  # noqa: E402
from pydetect.detectors import BaseDetector, OverFeat  # noqa: E402
from pydetect.detectors.overfeat import _rescale, greedy_merge  # noqa: E402
from pydetect.engine import crops_to_tensor  # noqa: E402


def _net(num_classes=3, window=44, widths=(16, 32, 64), seed=0):
    torch.manual_seed(seed)
    net = models.OverFeatNet(num_classes, window, widths)
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():  # batch-norm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


@pytest.mark.parametrize("window, widths, size", [(44, (16, 32, 64), (100, 93)), (22, (8, 8, 8), (61, 70)),
                                                   (30, (6, 10), (47, 52))])
def test_dense_map_equals_the_classifier_on_each_window(window, widths, size):
    net = _net(4, window, widths)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        scores, deltas = net.dense(x)
        assert scores.shape[-2:] == net.output_size(*size)
        mh, mw = scores.shape[-2:]
        s = net.stride
        # A window reaching past the image: those pixels are never read, so any padding gives
        # the same output (zeros here).
        padded = torch.nn.functional.pad(x, (0, window, 0, window))
        crops = torch.cat([padded[:, :, s * i:s * i + window, s * j:s * j + window]
                           for i in range(mh) for j in range(mw)])
        c_scores, c_deltas = net(crops)
    np.testing.assert_allclose(scores[0].permute(1, 2, 0).reshape(-1, 5).numpy(), c_scores.numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(deltas[0].permute(1, 2, 0).reshape(-1, 16).numpy(), c_deltas.numpy(),
                               rtol=1e-4, atol=1e-5)


def test_network_rejects_what_it_cannot_evaluate():
    with pytest.raises(ValueError, match="window"):
        models.OverFeatNet(2, window=21, widths=(8, 8, 8))  # needs 22
    net = _net()
    with pytest.raises(ValueError, match="crops must be"):
        net(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="at least 44"):
        net.dense(torch.zeros(1, 3, 43, 80))


@pytest.fixture(scope="module")
def tiny():
    train = data.digits_in_clutter("train", n_images=24)
    det = OverFeat(window=30, widths=(8, 16), hidden=32, copies=2, negatives_per_image=4, mining_rounds=1,
                   mined_per_image=2, train_seconds=600.0, max_iter=60, regression_seconds=600.0, regression_iter=20,
                   batch_size=16, progress=False, num_threads=1)
    # Iteration counts, not seconds, end each phase (a few seconds in all), so the model and
    # what it mines do not depend on the machine's speed.
    return det.fit(train)


def test_score_maps_are_the_classifier_on_each_window_at_every_scale(tiny):
    image = data.digits_in_clutter("val", n_images=1)[0][0]
    maps = tiny.predict_score_maps(image)
    assert len(maps) == len(tiny.scales_) >= 2
    for m, scale in list(zip(maps, tiny.scales_))[::2]:
        level, (sx, sy) = _rescale(image, scale, tiny._pad)
        assert m.scale == (sx, sy)
        windows = m.windows()
        # windows() in image pixels <-> the level's window corners (stride j, stride i)
        mh, mw = m.scores.shape[1:]
        jj, ii = np.meshgrid(np.arange(mw), np.arange(mh))
        s = tiny.net_.stride
        np.testing.assert_allclose(windows[:, 0] * sx + tiny._pad, s * jj.ravel(), atol=1e-9)
        np.testing.assert_allclose(windows[:, 1] * sy + tiny._pad, s * ii.ravel(), atol=1e-9)
        np.testing.assert_allclose(windows[:, 2] - windows[:, 0], tiny.window / sx)
        crops = np.stack([tiny._cut(level, s * j, s * i) for i, j in zip(ii.ravel(), jj.ravel())])
        with torch.no_grad():
            probs = torch.softmax(tiny.net_(crops_to_tensor(crops))[0], 1).numpy()
        np.testing.assert_allclose(m.scores.reshape(len(probs[0]), -1).T, probs, atol=2e-5)


def test_predictions_are_valid_and_survive_save_and_load(tiny, tmp_path):
    val = data.digits_in_clutter("val", n_images=3)
    path = tmp_path / "of.model"
    tiny.save(path)
    loaded = BaseDetector.load(path)
    assert isinstance(loaded, OverFeat) and loaded.scales_ == tiny.scales_
    for image, _ in val:
        a, b = tiny.predict(image), loaded.predict(image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
        h, w = image.shape[:2]
        assert len(a) <= tiny.detections_per_img
        if len(a):
            assert (a.boxes[:, 0] >= 0).all() and (a.boxes[:, 2] <= w).all() and (a.boxes[:, 3] <= h).all()
            assert (a.scores > tiny.score_thresh).all() and (np.diff(a.scores) <= 0).all()
            assert set(a.labels.tolist()) <= set(range(10))


def test_training_records_its_rounds_and_the_mined_negatives(tiny):
    h = tiny.history_
    assert len(h["rounds"]) == 2 and h["iterations"] == sum(r["iterations"] for r in h["rounds"])
    assert len(h["mined"]) == 1 and 0 <= h["mined"][0] <= 2 * 24
    assert h["regression"]["iterations"] >= 1
    assert 0.0 <= h["window_accuracy"] <= 1.0


def test_mined_negatives_are_grid_windows_that_overlap_no_object(tiny):
    from pydetect import ops

    train = data.digits_in_clutter("train", n_images=6)
    mined = 0
    for image, t in train:
        target = {"boxes": np.asarray(t["boxes"], np.float64), "labels": np.asarray(t["labels"])}
        crops = tiny._mine([image], [target], torch.device("cpu"))
        assert len(crops) <= tiny.mined_per_image
        mined += len(crops)
        # Brute force: every window of the dense grid at every level, split by its centre box's
        # overlap with the objects; each mined crop must be one of the background windows.
        background = set()
        for level, (sx, sy) in tiny._levels(image):
            cx, cy, _ = tiny._cell_grid(level.shape)
            iou = np.asarray(ops.box_iou(tiny._centre_boxes(cx, cy, sx, sy), target["boxes"])).max(1)
            for x, y in zip(cx[iou < 0.3], cy[iou < 0.3]):
                background.add(tiny._cut(level, int(x - tiny.window / 2), int(y - tiny.window / 2)).tobytes())
        assert all(c.tobytes() in background for c in crops)
    assert mined > 0


def test_resume_reuses_finished_phases(tmp_path):
    train = data.digits_in_clutter("train", n_images=8)
    params = dict(window=30, widths=(8, 16), hidden=16, copies=1, negatives_per_image=2, mining_rounds=1,
                  mined_per_image=1, train_seconds=3.0, max_iter=12, regression_seconds=1.0, regression_iter=5,
                  batch_size=8, progress=False, num_threads=1, checkpoint_dir=str(tmp_path))
    first = OverFeat(**params).fit(train)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier-0.ckpt", "classifier-1.ckpt", "regressor.ckpt"]
    again = OverFeat(**params).fit(train)
    assert [r["resumed_from"] for r in again.history_["rounds"]] == [r["iterations"] for r in first.history_["rounds"]]
    for (name, a), b in zip(first.net_.state_dict().items(), again.net_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def _reference_greedy_merge(boxes, scores, labels, iou):
    from _reference_rcnn import iou as overlap

    out = []
    for c in sorted(set(labels.tolist())):
        items = sorted([(float(s), i) for i, (s, lab) in enumerate(zip(scores, labels)) if lab == c],
                       key=lambda t: -t[0])
        left = [i for _, i in items]
        while left:
            top = left[0]
            group = [i for i in left if i == top or overlap(boxes[top], boxes[i]) >= iou]
            w = np.array([scores[i] for i in group], np.float64)
            merged = (np.array([boxes[i] for i in group], np.float64) * w[:, None]).sum(0) / w.sum()
            out.append((float(scores[top]), c, merged))
            left = [i for i in left if i not in group]
    out.sort(key=lambda t: -t[0])
    return out


def test_greedy_merge_matches_a_plain_python_reference():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 60, (80, 2))
    wh = rng.uniform(8, 30, (80, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(80).astype(np.float32) / 80 + 0.01
    labels = rng.integers(0, 3, 80)
    b, s, lab = greedy_merge(boxes, scores, labels, 0.4)
    ref = _reference_greedy_merge(boxes, scores, labels, 0.4)
    assert len(b) == len(ref) < 80
    np.testing.assert_allclose(s, [r[0] for r in ref])
    np.testing.assert_array_equal(lab, [r[1] for r in ref])
    np.testing.assert_allclose(b, np.stack([r[2] for r in ref]), rtol=1e-5, atol=1e-4)


def test_greedy_merge_of_nothing():
    b, s, lab = greedy_merge(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5)
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)


@pytest.mark.parametrize("name, value, match", [
    ("window", 21, "window"), ("window", 10_000, "window"), ("context", 0.5, "context"),
    ("widths", (), "widths"), ("widths", "abc", "widths"), ("merge", "soft", "merge"),
    ("positive_fraction", 1.0, "positive_fraction"), ("mining_rounds", -1, "mining_rounds"),
    ("score_thresh", 2.0, "score_thresh"), ("batch_size", 1, "batch_size"), ("augment", "strong", "augment"),
    ("train_seconds", 0, "train_seconds"), ("hflip", "yes", "hflip"),
])
def test_bad_parameters_are_named_before_training(name, value, match):
    train = data.digits_in_clutter("train", n_images=2)
    with pytest.raises((ValueError, TypeError), match=match):
        OverFeat(**{name: value}).fit(train)


def test_not_fitted_and_sklearn_clone():
    from pydetect.detectors import NotFittedError

    with pytest.raises(NotFittedError):
        OverFeat().predict(np.zeros((50, 50, 3), np.uint8))
    sklearn_base = pytest.importorskip("sklearn.base")
    clone = sklearn_base.clone(OverFeat(window=52, merge="greedy"))
    assert clone.get_params()["window"] == 52 and clone.get_params()["merge"] == "greedy"
