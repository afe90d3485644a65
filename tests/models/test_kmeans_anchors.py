"""kmeans_anchors / shape_iou against a plain-loop reference (YOLOv2's dimension clusters)."""

from __future__ import annotations

import numpy as np
import pytest

from pydetect.models import kmeans_anchors, shape_iou


# ----------------------------------------------------------------------------- reference
def ref_iou(a, b):
    """IoU of two (w, h) shapes sharing a centre."""
    inter = min(a[0], b[0]) * min(a[1], b[1])
    return inter / (a[0] * a[1] + b[0] * b[1] - inter)


def ref_kmeans(wh, k, seed=0, max_iter=300):
    """k-means++ seeding (same rng calls) and Lloyd iterations with 1 - IoU, in plain loops."""
    wh = [(float(w), float(h)) for w, h in wh]
    n = len(wh)
    rng = np.random.default_rng(seed)
    centres = [wh[int(rng.integers(n))]]
    while len(centres) < k:
        d2 = [(1 - max(ref_iou(box, c) for c in centres)) ** 2 for box in wh]
        total = sum(d2)
        centres.append(wh[int(rng.choice(n, p=np.array(d2) / total))])
    assign = None
    for _ in range(max_iter):
        new = []
        for box in wh:
            ious = [ref_iou(box, c) for c in centres]
            new.append(ious.index(max(ious)))  # first of tied maxima
        if new == assign:
            break
        assign = new
        for c in range(k):
            members = [wh[i] for i in range(n) if assign[i] == c]
            if members:
                centres[c] = (sum(m[0] for m in members) / len(members), sum(m[1] for m in members) / len(members))
    centres.sort(key=lambda c: (c[0] * c[1], c[0]))
    mean_iou = sum(max(ref_iou(box, c) for c in centres) for box in wh) / n
    return np.array(centres), mean_iou


def random_shapes(n, seed):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(4), np.log(120), size=(n, 2)))


# ----------------------------------------------------------------------------- shape_iou
def test_shape_iou_matches_loops():
    a, b = random_shapes(7, 1), random_shapes(5, 2)
    got = shape_iou(a, b)
    assert got.shape == (7, 5) and got.dtype == np.float64
    want = np.array([[ref_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # Hand-worked: (2, 4) vs (4, 2) share a 2x2 square: 4 / (8 + 8 - 4).
    assert shape_iou([[2.0, 4.0]], [[4.0, 2.0]])[0, 0] == pytest.approx(1 / 3)
    assert shape_iou([[3.0, 5.0]], [[3.0, 5.0]])[0, 0] == 1.0


def test_shape_iou_edge_cases_and_kinds():
    assert shape_iou(np.zeros((0, 2)), random_shapes(3, 0)).shape == (0, 3)
    assert shape_iou([[0.0, 0.0]], [[0.0, 0.0], [2.0, 2.0]]).tolist() == [[0.0, 0.0]]  # zero-area: 0
    a32 = random_shapes(4, 3).astype(np.float32)
    assert shape_iou(a32, a32).dtype == np.float32
    a = np.asfortranarray(random_shapes(6, 4))[::2]  # non-contiguous
    np.testing.assert_allclose(shape_iou(a, a), shape_iou(np.ascontiguousarray(a), a))
    with pytest.raises(ValueError, match="a_wh"):
        shape_iou(np.ones((3, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="b_wh"):
        shape_iou(np.ones((3, 2)), [[1.0, -1.0]])
    with pytest.raises(ValueError, match="b_wh"):
        shape_iou(np.ones((3, 2)), [[1.0, np.nan]])


def test_shape_iou_torch():
    torch = pytest.importorskip("torch")
    a, b = random_shapes(5, 5), random_shapes(3, 6)
    got = shape_iou(torch.from_numpy(a), b)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), shape_iou(a, b), rtol=1e-12)
    t = torch.tensor(a, dtype=torch.float32, requires_grad=True)
    shape_iou(t, torch.tensor(b, dtype=torch.float32)).sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()
    with pytest.raises(ValueError, match="a_wh"):
        shape_iou(torch.ones(3, 3), b)


# ----------------------------------------------------------------------------- kmeans_anchors
@pytest.mark.parametrize("n, k, seed", [(40, 3, 0), (60, 5, 1), (25, 1, 2), (80, 9, 3), (12, 12, 4)])
def test_kmeans_matches_reference(n, k, seed):
    wh = random_shapes(n, seed + 10)
    anchors, mean_iou = kmeans_anchors(wh, k, seed=seed)
    ref_anchors, ref_mean = ref_kmeans(wh, k, seed=seed)
    assert anchors.shape == (k, 2) and anchors.dtype == np.float64
    assert isinstance(mean_iou, float)
    np.testing.assert_allclose(anchors, ref_anchors, rtol=1e-10)
    assert mean_iou == pytest.approx(ref_mean, rel=1e-12)


@pytest.mark.parametrize("max_iter", [0, 1, 2])
def test_kmeans_max_iter_matches_reference(max_iter):
    wh = random_shapes(50, 7)
    anchors, mean_iou = kmeans_anchors(wh, 4, seed=3, max_iter=max_iter)
    ref_anchors, ref_mean = ref_kmeans(wh, 4, seed=3, max_iter=max_iter)
    np.testing.assert_allclose(anchors, ref_anchors, rtol=1e-10)
    assert mean_iou == pytest.approx(ref_mean, rel=1e-12)


def test_kmeans_with_duplicates_matches_reference():
    # Many repeated shapes (integer pixel sizes): ties and duplicate boxes.
    rng = np.random.default_rng(0)
    wh = rng.integers(5, 12, size=(70, 2)).astype(float)
    for k in (2, 6):
        anchors, mean_iou = kmeans_anchors(wh, k, seed=5)
        ref_anchors, ref_mean = ref_kmeans(wh, k, seed=5)
        np.testing.assert_allclose(anchors, ref_anchors, rtol=1e-10)
        assert mean_iou == pytest.approx(ref_mean, rel=1e-12)


def test_sorted_by_area_and_mean_iou_is_best_iou_mean():
    wh = random_shapes(100, 8)
    anchors, mean_iou = kmeans_anchors(wh, 7, seed=0)
    area = anchors[:, 0] * anchors[:, 1]
    assert (np.diff(area) >= 0).all()
    best = [max(ref_iou(box, a) for a in anchors) for box in wh]
    assert mean_iou == pytest.approx(sum(best) / len(best), rel=1e-12)
    assert 0 < mean_iou <= 1


def test_deterministic_per_seed():
    wh = random_shapes(200, 9)
    a0, m0 = kmeans_anchors(wh, 5, seed=0)
    a0b, m0b = kmeans_anchors(wh, 5, seed=0)
    assert np.array_equal(a0, a0b) and m0 == m0b
    runs = {tuple(np.round(kmeans_anchors(wh, 5, seed=s)[0].ravel(), 9)) for s in range(6)}
    assert len(runs) > 1  # different seeds are different draws (not every seed must differ)


def test_k1_gives_mean_shape():
    wh = random_shapes(30, 11)
    anchors, mean_iou = kmeans_anchors(wh, 1)
    np.testing.assert_allclose(anchors[0], wh.mean(0), rtol=1e-12)
    assert mean_iou == pytest.approx(np.mean([ref_iou(b, anchors[0]) for b in wh]), rel=1e-12)


def test_k_equal_distinct_shapes_gives_iou_one():
    shapes = np.array([[10.0, 10.0], [20.0, 10.0], [10.0, 30.0], [50.0, 60.0]])
    wh = np.repeat(shapes, [3, 1, 4, 2], axis=0)
    anchors, mean_iou = kmeans_anchors(wh, 4, seed=0)
    assert mean_iou == 1.0
    order = np.argsort(shapes[:, 0] * shapes[:, 1], kind="stable")
    np.testing.assert_array_equal(anchors, shapes[order])


def test_recovers_well_separated_clusters():
    rng = np.random.default_rng(12)
    groups = [np.array([8.0, 24.0]), np.array([30.0, 30.0]), np.array([90.0, 45.0])]
    wh = np.concatenate([g * np.exp(rng.normal(0, 0.03, size=(40 + 10 * i, 2))) for i, g in enumerate(groups)])
    labels = np.repeat([0, 1, 2], [40, 50, 60])
    for seed in range(5):
        anchors, mean_iou = kmeans_anchors(wh, 3, seed=seed)
        for i in range(3):  # groups are listed by increasing area
            np.testing.assert_allclose(anchors[i], wh[labels == i].mean(0), rtol=1e-12)
        assert mean_iou > 0.9


def test_more_anchors_on_real_boxes_do_not_lose_much():
    # Not guaranteed monotonic in k (local optima): only check the broad trend.
    wh = random_shapes(300, 13)
    ious = [kmeans_anchors(wh, k, seed=0)[1] for k in (1, 3, 9)]
    assert ious[0] < ious[1] < ious[2]


def test_torch_input():
    torch = pytest.importorskip("torch")
    wh = random_shapes(40, 14)
    a_np, m_np = kmeans_anchors(wh, 3, seed=1)
    for t in (torch.from_numpy(wh), torch.from_numpy(wh).float()):
        a, m = kmeans_anchors(t, 3, seed=1)
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and isinstance(m, float)
        np.testing.assert_allclose(a, a_np, rtol=1e-5)
        assert m == pytest.approx(m_np, rel=1e-5)


def test_list_and_integer_input():
    anchors, mean_iou = kmeans_anchors([[10, 20], [11, 19], [40, 40], [42, 38]], 2)
    np.testing.assert_allclose(anchors, [[10.5, 19.5], [41.0, 39.0]])
    assert anchors.dtype == np.float64


@pytest.mark.parametrize("boxes_wh, exc, match", [
    (np.ones((5, 3)), ValueError, r"boxes_wh must have shape \(N, 2\)"),
    (np.ones(4), ValueError, r"boxes_wh must have shape \(N, 2\).*got \(4,\)"),
    (3.0, ValueError, r"boxes_wh must have shape \(N, 2\).*got \(\)"),
    (np.zeros((0, 2)), ValueError, "boxes_wh must hold at least one box"),
    ([[1.0, np.nan]], ValueError, "boxes_wh must be finite"),
    ([[1.0, np.inf]], ValueError, "boxes_wh must be finite"),
    ([[1.0, 0.0]], ValueError, "boxes_wh must hold positive"),
    ([[1.0, -2.0]], ValueError, "boxes_wh must hold positive"),
    ([["a", "b"]], TypeError, "boxes_wh"),
    (None, TypeError, "boxes_wh"),
])
def test_bad_boxes(boxes_wh, exc, match):
    with pytest.raises(exc, match=match):
        kmeans_anchors(boxes_wh, 1)


def test_bad_k_and_seed():
    wh = [[1.0, 2.0], [2.0, 1.0], [2.0, 1.0]]
    with pytest.raises(ValueError, match="k must be >= 1"):
        kmeans_anchors(wh, 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        kmeans_anchors(wh, 2.0)
    with pytest.raises(TypeError, match="k must be an integer"):
        kmeans_anchors(wh, True)
    with pytest.raises(ValueError, match="k must be at most the number of distinct shapes.*k=3 for 2 distinct"):
        kmeans_anchors(wh, 3)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        kmeans_anchors(wh, 1, seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        kmeans_anchors(wh, 1, seed=0.5)
    with pytest.raises(ValueError, match="max_iter must be >= 0"):
        kmeans_anchors(wh, 1, max_iter=-1)
