import numpy as np
import pytest
import torch

import _reference as ref
from pydetect import ops

DTYPES = [np.float32, np.float64]


def random_boxes(rng, n, dtype):
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(0, 40, (n, 2))
    wh[rng.random(n) < 0.1] = 0  # some degenerate (zero-area) boxes
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_iou_equals_brute_force(rng, dtype):
    a, b = random_boxes(rng, 37, dtype), random_boxes(rng, 23, dtype)
    got = ops.box_iou(a, b)
    assert got.dtype == dtype and got.shape == (37, 23)
    np.testing.assert_array_equal(got, ref.box_iou(a, b))  # NaN == NaN for 0-area pairs


def test_box_iou_hand_worked():
    a = np.array([[0, 0, 2, 2]], np.float64)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 6, 6]], np.float64)
    np.testing.assert_array_equal(ops.box_iou(a, b), [[1 / 7, 1.0, 0.0, 0.0]])


def test_box_iou_is_thread_count_independent(rng):
    import pydetect

    a, b = random_boxes(rng, 500, np.float32), random_boxes(rng, 300, np.float32)
    before = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        one = ops.box_iou(a, b)
        pydetect.set_num_threads(2)
        two = ops.box_iou(a, b)
    finally:
        pydetect.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_box_iou_mixed_dtypes_and_noncontiguous(rng):
    a = random_boxes(rng, 10, np.float64)
    wide = np.zeros((8, 8), np.float32)
    wide[:, ::2] = random_boxes(rng, 8, np.float32)
    b = wide[:, ::2]  # non-contiguous view
    assert not b.flags.c_contiguous
    got = ops.box_iou(a, b)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, ref.box_iou(a, b.astype(np.float64)))


def test_box_iou_empty():
    e = np.zeros((0, 4), np.float32)
    assert ops.box_iou(e, np.ones((3, 4), np.float32)).shape == (0, 3)
    assert ops.box_iou(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    assert ops.box_iou([], []).shape == (0, 0)


def test_torch_in_torch_out(rng):
    a = torch.from_numpy(random_boxes(rng, 5, np.float32))
    out = ops.box_iou(a, a)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert isinstance(ops.box_area(a.double()), torch.Tensor)
    np.testing.assert_array_equal(ops.box_area(a).numpy(), [ref.area(b) for b in a.numpy()])
    a.requires_grad_(True)
    assert ops.box_area(a).shape == (5,)  # a tensor requiring grad is read, not rejected


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_area(rng, dtype):
    b = random_boxes(rng, 20, dtype)
    np.testing.assert_array_equal(ops.box_area(b), [ref.area(x) for x in b])
    assert ops.box_area(np.zeros((0, 4), dtype)).dtype == dtype


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_round_trip(rng, fmt):
    b = random_boxes(rng, 30, np.float64)
    there = ops.box_convert(b, "xyxy", fmt)
    np.testing.assert_allclose(ops.box_convert(there, fmt, "xyxy"), b, atol=1e-12)


def test_box_convert_hand_worked():
    b = np.array([[10, 20, 30, 60]], np.float32)
    np.testing.assert_array_equal(ops.box_convert(b, "xyxy", "xywh"), [[10, 20, 20, 40]])
    np.testing.assert_array_equal(ops.box_convert(b, "xyxy", "cxcywh"), [[20, 40, 20, 40]])
    np.testing.assert_array_equal(ops.box_convert([[20, 40, 20, 40]], "cxcywh", "xywh"), [[10, 20, 20, 40]])


def test_clip_and_remove_small():
    b = np.array([[-5, -5, 50, 50], [10, 10, 12, 30], [90, 90, 120, 130]], np.float32)
    np.testing.assert_array_equal(ops.clip_boxes(b, (100, 80)),
                                  [[0, 0, 50, 50], [10, 10, 12, 30], [80, 90, 80, 100]])
    np.testing.assert_array_equal(ops.remove_small_boxes(b, 3), [0, 2])
    np.testing.assert_array_equal(ops.remove_small_boxes(b, 2), [0, 1, 2])
    assert ops.remove_small_boxes(np.zeros((0, 4)), 1).dtype == np.int64


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((3, 5)), ValueError, r"boxes must have shape \(N, 4\), got \(3, 5\)"),
    (np.zeros(4), ValueError, r"shape \(N, 4\)"),
    (np.array([[0, 0, np.nan, 1]]), ValueError, "boxes must be finite, got NaN"),
    (np.array([[0, 0, np.inf, 1]]), ValueError, "boxes must be finite, got infinite"),
    (np.array([["a", "b", "c", "d"]]), TypeError, "boxes must hold real numbers"),
    (np.zeros((2, 4), bool), TypeError, "boxes must hold real numbers"),
    ("boxes", TypeError, "boxes must be an array"),
])
def test_bad_boxes(bad, error, match):
    with pytest.raises(error, match=match):
        ops.box_area(bad)


def test_bad_arguments():
    b = np.zeros((1, 4))
    with pytest.raises(ValueError, match="in_fmt must be one of"):
        ops.box_convert(b, "xyzw", "xyxy")
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        ops.remove_small_boxes(b, -1)
    with pytest.raises(TypeError, match="size must be a"):
        ops.clip_boxes(b, 5)
    with pytest.raises(ValueError, match=r"boxes2 must have shape"):
        ops.box_iou(b, np.zeros((2, 3)))


def _torchvision():
    return pytest.importorskip("torchvision.ops", reason="torchvision is a benchmark peer, not a dependency")


@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_with_torchvision_box_ops(rng, dtype):
    tv = _torchvision()
    a, b = random_boxes(rng, 50, dtype), random_boxes(rng, 40, dtype)
    np.testing.assert_array_equal(ops.box_iou(a, b), tv.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy())
    for fmt in ("xywh", "cxcywh"):
        np.testing.assert_array_equal(ops.box_convert(a, "xyxy", fmt),
                                      tv.box_convert(torch.from_numpy(a), "xyxy", fmt).numpy())
    np.testing.assert_array_equal(ops.remove_small_boxes(a, 5), tv.remove_small_boxes(torch.from_numpy(a), 5).numpy())
