import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import _reference as ref
from pydetect import ops

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_equals_brute_force(dtype, thr):
    rng = np.random.default_rng(int(thr * 10))
    boxes, scores = ref.clustered_boxes(rng, 300, dtype)
    np.testing.assert_array_equal(ops.nms(boxes, scores, thr), ref.nms(boxes, scores, thr))


def test_nms_ties_keep_lower_index_first(rng):
    boxes, _ = ref.clustered_boxes(rng, 200, np.float32)
    scores = rng.integers(0, 5, 200).astype(np.float32)  # many equal scores
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), ref.nms(boxes, scores, 0.5))
    same = np.tile([[0, 0, 10, 10]], (4, 1)).astype(np.float32)
    np.testing.assert_array_equal(ops.nms(same, np.ones(4, np.float32), 0.5), [0])


def test_nms_hand_worked():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.1], np.float32)
    # IoU(0, 1) = 90 / 110 = 0.818; IoU(0, 3) = 1.
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [1, 2])
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.85), [1, 2, 0])
    np.testing.assert_array_equal(ops.nms(boxes, scores, 1.0), [1, 2, 0, 3])


def test_nms_degenerate_boxes_are_never_suppressed():
    # Two zero-area boxes have IoU 0/0 = NaN, which is not > threshold (as in torchvision).
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, [0.9, 0.8, 0.7], 0.0), [0, 1, 2])


def test_nms_empty_and_single():
    keep = ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.dtype == np.int64 and keep.shape == (0,)
    np.testing.assert_array_equal(ops.nms([[0, 0, 1, 1]], [0.3], 0.5), [0])
    t = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64


def test_nms_noncontiguous_torch(rng):
    boxes, scores = ref.clustered_boxes(rng, 100, np.float64)
    tb = torch.from_numpy(np.asfortranarray(boxes))
    assert not tb.is_contiguous()
    np.testing.assert_array_equal(ops.nms(tb, torch.from_numpy(scores), 0.4).numpy(), ref.nms(boxes, scores, 0.4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_nms_equals_per_class_reference(rng, dtype):
    boxes, scores = ref.clustered_boxes(rng, 400, dtype, num_clusters=6)
    labels = rng.integers(-2, 5, 400)
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, labels, 0.5),
                                  ref.batched_nms(boxes, scores, labels, 0.5))


def test_batched_nms_labels_separate():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    np.testing.assert_array_equal(ops.batched_nms(boxes, [0.5, 0.9, 0.7], [0, 1, 0], 0.5), [1, 2])


@pytest.mark.parametrize("method", ["gaussian", "linear"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_nms_equals_reference(rng, method, dtype):
    boxes, scores = ref.clustered_boxes(rng, 150, dtype, num_clusters=8)
    keep, kept = ops.soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.01, method=method)
    rkeep, rkept = ref.soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
    np.testing.assert_array_equal(keep, rkeep)
    # exp() may differ in the last bit between libm and numpy: compare scores to 1e-6.
    np.testing.assert_allclose(kept, rkept, rtol=1e-6)
    assert kept.dtype == dtype
    assert np.all(np.diff(kept) <= 0)


def test_soft_nms_hand_worked():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.8, 0.3])
    keep, kept = ops.soft_nms(boxes, scores, iou_threshold=0.3, method="linear")
    np.testing.assert_array_equal(keep, [0, 1, 2])  # IoU(0, 1) = 0.5 -> 0.8 * 0.5 = 0.4
    np.testing.assert_allclose(kept, [0.9, 0.4, 0.3])
    keep, kept = ops.soft_nms(boxes, scores, sigma=0.5, method="gaussian")
    np.testing.assert_allclose(kept, [0.9, 0.8 * np.exp(-0.25 / 0.5), 0.3])
    keep, kept = ops.soft_nms(boxes, scores, score_threshold=0.35, method="gaussian")
    np.testing.assert_array_equal(keep, [0, 1])  # 0.3 < 0.35 is dropped from the start


def test_soft_nms_zero_area_boxes_keep_their_score():
    boxes = np.array([[1, 1, 1, 1], [1, 1, 1, 1]], np.float32)
    keep, kept = ops.soft_nms(boxes, [0.9, 0.8])
    np.testing.assert_array_equal(keep, [0, 1])
    np.testing.assert_allclose(kept, [0.9, 0.8])


@pytest.mark.parametrize("call", [
    lambda b, s: ops.nms(b, s, 1.5),
    lambda b, s: ops.nms(b, s, -0.1),
    lambda b, s: ops.nms(b, s, float("nan")),
])
def test_bad_threshold(call):
    with pytest.raises(ValueError, match="iou_threshold"):
        call(np.zeros((2, 4)), np.zeros(2))


def test_bad_inputs():
    b = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        ops.nms(b, np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="scores must be finite"):
        ops.nms(b, [0.1, np.nan, 0.3], 0.5)
    with pytest.raises(TypeError, match="labels must hold integers"):
        ops.batched_nms(b, np.zeros(3), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        ops.batched_nms(b, np.zeros(3), np.zeros(4, int), 0.5)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ops.soft_nms(b, np.zeros(3), sigma=0)
    with pytest.raises(ValueError, match="method must be one of"):
        ops.soft_nms(b, np.zeros(3), method="hard")
    with pytest.raises(TypeError, match="iou_threshold must be a real number"):
        ops.nms(b, np.zeros(3), "0.5")


# Property tests --------------------------------------------------------------------------
coords = st.floats(0, 100, allow_nan=False, width=32)


@st.composite
def box_sets(draw):
    n = draw(st.integers(0, 40))
    xy = draw(hnp.arrays(np.float32, (n, 2), elements=coords))
    wh = draw(hnp.arrays(np.float32, (n, 2), elements=st.floats(0, 50, width=32)))
    scores = draw(hnp.arrays(np.float32, n, elements=st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9])))
    return np.concatenate([xy, xy + wh], axis=1), scores


@settings(max_examples=150, deadline=None)
@given(box_sets(), st.sampled_from([0.0, 0.2, 0.5, 0.8]))
def test_nms_properties(data, thr):
    boxes, scores = data
    keep = ops.nms(boxes, scores, thr)
    # The float32 IoU is compared with the threshold in double, as torchvision's kernel does
    # (numpy 2 would otherwise compare float32 with float32(thr): 0.8f > 0.8f is False, but
    # 0.800000012 > 0.8 is True).
    kept_iou = ops.box_iou(boxes[keep], boxes[keep]).astype(np.float64)
    off_diagonal = ~np.eye(len(keep), dtype=bool)
    assert not np.any(kept_iou[off_diagonal] > thr)  # (NaN for zero-area pairs compares False)
    assert np.all(np.diff(scores[keep]) <= 0)
    dropped = np.setdiff1d(np.arange(len(boxes)), keep)
    position = {int(k): p for p, k in enumerate(keep)}
    for d in dropped:
        overlaps = ops.box_iou(boxes[d:d + 1], boxes[keep])[0].astype(np.float64) > thr
        # suppressed by a kept box visited before it (higher score, or equal and lower index)
        assert any(overlaps[p] and (scores[k] > scores[d] or (scores[k] == scores[d] and k < d))
                   for k, p in position.items())


@settings(max_examples=100, deadline=None)
@given(box_sets(), st.sampled_from([0.3, 0.6]), st.integers(0, 3))
def test_batched_nms_properties(data, thr, num_labels):
    boxes, scores = data
    labels = (np.arange(len(boxes)) % (num_labels + 1)).astype(np.int64)
    keep = ops.batched_nms(boxes, scores, labels, thr)
    assert np.all(np.diff(scores[keep]) <= 0)
    for label in np.unique(labels):
        mine = keep[labels[keep] == label]
        iou = ops.box_iou(boxes[mine], boxes[mine]).astype(np.float64)
        assert not np.any(iou[~np.eye(len(mine), dtype=bool)] > thr)


# Peers -------------------------------------------------------------------------------------
def test_parity_with_opencv_nmsboxes(rng):
    cv2 = pytest.importorskip("cv2")
    for seed in range(5):
        r = np.random.default_rng(seed)
        boxes, scores = ref.clustered_boxes(r, 500, np.float64)
        xywh = ops.box_convert(boxes, "xyxy", "xywh")
        theirs = cv2.dnn.NMSBoxes([tuple(map(float, b)) for b in xywh], scores.tolist(), 0.0, 0.5)
        np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), np.asarray(theirs).ravel())


@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_with_torchvision_nms(dtype):
    tv = pytest.importorskip("torchvision.ops", reason="torchvision is a benchmark peer, not a dependency")
    for seed in range(10):
        r = np.random.default_rng(seed)
        boxes, scores = ref.clustered_boxes(r, 2000, dtype)
        tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
        for thr in (0.3, 0.5, 0.7):
            np.testing.assert_array_equal(ops.nms(boxes, scores, thr), tv.nms(tb, ts, thr).numpy())
        labels = r.integers(0, 10, len(boxes))
        np.testing.assert_array_equal(ops.batched_nms(boxes, scores, labels, 0.5),
                                      tv.batched_nms(tb, ts, torch.from_numpy(labels), 0.5).numpy())


# Both exact algorithms behind ops.nms (compaction scan and grid) against the reference ----
def _grid_edge_cases(rng, dtype):
    boxes, scores = ref.clustered_boxes(rng, 300, dtype, num_clusters=10)
    extra = np.array([
        [0, 0, 1000, 1000],        # covers every cell: goes to the large-box list
        [-5e5, -5e5, -4e5, -4e5],  # far outlier: the grid is bounded, cells grow
        [300, 300, 300, 300],      # empty boxes never interact
        [310, 310, 305, 320],      # inverted box
        [0, 0, 1000, 1000],
    ], dtype)
    return np.concatenate([boxes, extra]), np.concatenate([scores, np.array([0.99, 0.5, 0.95, 0.97, 0.3], dtype)])


@pytest.mark.parametrize("algorithm", ["compaction", "grid"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", [0.0, 0.5, 0.9, 1.0])
def test_nms_algorithms_equal_reference(rng, algorithm, dtype, thr):
    from pydetect.ops.nms import nms_with_algorithm

    boxes, scores = _grid_edge_cases(rng, dtype)
    np.testing.assert_array_equal(nms_with_algorithm(boxes, scores, thr, algorithm), ref.nms(boxes, scores, thr))
    tied = np.round(scores * 4).astype(dtype)
    np.testing.assert_array_equal(nms_with_algorithm(boxes, tied, thr, algorithm), ref.nms(boxes, tied, thr))


def test_nms_grid_only_empty_boxes():
    from pydetect.ops.nms import nms_with_algorithm

    boxes = np.array([[1, 1, 1, 1], [2, 2, 2, 5]], np.float32)
    np.testing.assert_array_equal(nms_with_algorithm(boxes, np.array([0.1, 0.9], np.float32), 0.0, "grid"), [1, 0])
    with pytest.raises(ValueError, match="algorithm"):
        nms_with_algorithm(boxes, np.array([0.1, 0.9], np.float32), 0.0, "auto")
