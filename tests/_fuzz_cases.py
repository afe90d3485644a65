"""Hypothesis fuzz cases of the public ops, run by tests/test_fuzz.py in child interpreters.

Each case feeds arbitrary shapes, dtypes, memory layouts and values (NaN, inf, huge,
negative, empty, non-contiguous) to one op family and asserts that every call either
returns a valid result (shapes, dtypes, invariants, and agreement with the brute-force
references where that is cheap) or raises ValueError / TypeError: nothing else. A crash
kills the child, which fails its test in the parent rather than the whole suite.

The example budget is small (the suite runs them on every change) and the search is
derandomised, so a run is reproducible; raise FUZZ_EXAMPLES to fuzz harder locally.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import _reference as ref
import _reference_cascade as ref_integral
import _reference_roi as ref_roi
from pydetect import ops

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 30)), deadline=None, database=None,
                derandomize=True, suppress_health_check=list(HealthCheck))

EXTREMES = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, -1e-300, 1e30, -1e30, 1e308, -1e308, 2.0**31, -2.0**31,
            2.0**63, -2.0**63, float(np.finfo(np.float32).max), float("nan"), float("inf"), float("-inf")]


def reals(lo=-1e3, hi=1e3):
    """Mostly ordinary floats, one time in four an extreme value."""
    ordinary = st.floats(lo, hi)
    return st.one_of(ordinary, ordinary, ordinary, st.sampled_from(EXTREMES))


def layouts(arr_strategy):
    """The array as C-contiguous, Fortran-ordered, reversed or a strided view."""
    def relayout(arr, how):
        if how == "fortran":
            return np.asfortranarray(arr)
        if how == "reversed" and arr.ndim:
            return arr[::-1]
        if how == "strided" and arr.ndim:
            big = np.repeat(arr, 2, axis=0)
            return big[::2]
        return arr
    return st.builds(relayout, arr_strategy, st.sampled_from(["c", "fortran", "reversed", "strided"]))


def in_dtype(value, dtype):
    with np.errstate(over="ignore"):  # 1e308 is inf in float32
        return dtype.type(value)


def float_arrays(shape, dtypes=(np.float32, np.float64), elements=None):
    dtype = st.sampled_from([np.dtype(d) for d in dtypes])
    return dtype.flatmap(lambda d: layouts(hnp.arrays(
        d, shape, elements=(reals() if elements is None else elements).map(lambda v: in_dtype(v, d)))))


def outcome(fn, *args, **kwargs):
    """fn's result, or None when it refuses the input with ValueError / TypeError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError):
        return None


def boxes_and_scores(max_n=12, values=None):
    """(boxes (n, 4), scores (n,)): sometimes of a wrong shape, dtype or length."""
    n = st.integers(0, max_n)
    return n.flatmap(lambda k: st.tuples(
        st.one_of(float_arrays((k, 4), elements=values), float_arrays(st.sampled_from([(k, 3), (4,), (k, 4, 1)])),
                  hnp.arrays(st.sampled_from([np.int32, np.int64, np.uint8, np.bool_]), (k, 4))),
        st.one_of(float_arrays((k,), elements=values), float_arrays((k + 1,)), hnp.arrays(np.int64, (k,)))))


def valid_boxes(b):
    """The validated form of b, as the ops see it (None: not acceptable)."""
    b = np.asarray(b)
    if b.dtype.kind not in "iuf" or b.dtype == np.bool_ or b.ndim != 2 or b.shape[1] != 4:
        return None
    if not np.isfinite(b).all():
        return None
    return b.astype(b.dtype if b.dtype in (np.float32, np.float64) else np.float32)


# ----------------------------------------------------------------------------- box ops
@FUZZ
@given(boxes_and_scores(), boxes_and_scores(max_n=5), st.sampled_from(["xyxy", "xywh", "cxcywh", "bad"]),
       st.tuples(reals(), reals()))
def fuzz_box_ops(bs1, bs2, fmt, size):
    (b1, _), (b2, _) = bs1, bs2
    v1, v2 = valid_boxes(b1), valid_boxes(b2)
    area = outcome(ops.box_area, b1)
    assert (area is None) == (v1 is None)
    if area is not None:
        assert area.shape == (len(v1),) and area.dtype == v1.dtype
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(area, [ref.area(b) for b in v1])
    iou = outcome(ops.box_iou, b1, b2)
    if v1 is None or v2 is None:
        assert iou is None
    elif iou is not None:  # mixed float dtypes compute in the wider one
        assert iou.shape == (len(v1), len(v2))
        with np.errstate(all="ignore"):
            expected = ref.box_iou(v1.astype(iou.dtype), v2.astype(iou.dtype))
        np.testing.assert_array_equal(iou, expected)
    out = outcome(ops.box_convert, b1, "xyxy", fmt)
    assert (out is None) == (v1 is None or fmt == "bad")
    if out is not None:
        assert out.shape == v1.shape and out.dtype == v1.dtype
        if fmt == "xyxy":
            np.testing.assert_array_equal(out, v1)
    clipped = outcome(ops.clip_boxes, b1, size)
    h, w = size
    ok_size = all(np.isfinite(s) and s >= 0 for s in size)
    assert (clipped is None) == (v1 is None or not ok_size)
    if clipped is not None:
        assert clipped.shape == v1.shape and clipped.dtype == v1.dtype
        assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 1::2] >= 0).all()
        assert (clipped[:, 0::2] <= v1.dtype.type(w)).all() and (clipped[:, 1::2] <= v1.dtype.type(h)).all()


# ----------------------------------------------------------------------------- NMS
def check_keep(keep, scores, n):
    assert keep.dtype == np.int64 and keep.ndim == 1
    assert len(np.unique(keep)) == len(keep) and ((keep >= 0) & (keep < n)).all()
    s = scores[keep]
    assert (s[:-1] >= s[1:]).all()  # by decreasing score


@FUZZ
@given(boxes_and_scores(max_n=14), reals(-0.5, 1.5), st.integers(-2, 3))
def fuzz_nms(bs, thr, n_labels):
    boxes, scores = bs
    b, s = valid_boxes(boxes), np.asarray(scores)
    valid = (b is not None and s.dtype.kind in "iuf" and s.shape == (len(b),) and np.isfinite(s).all()
             and np.isfinite(thr) and 0 <= thr <= 1)
    keep = outcome(ops.nms, boxes, scores, thr)
    assert (keep is None) == (not valid)
    if keep is None:
        return
    dtype = np.result_type(b.dtype, s.dtype if s.dtype.kind == "f" else np.float32)
    b, s = b.astype(dtype), s.astype(dtype)
    check_keep(keep, s, len(b))
    np.testing.assert_array_equal(keep, ref.nms(b, s, thr))
    labels = np.arange(len(b)) % max(n_labels, 1) - (n_labels < 0)
    keep = ops.batched_nms(boxes, scores, labels, thr)
    check_keep(keep, s, len(b))
    np.testing.assert_array_equal(keep, ref.batched_nms(b, s, labels, thr))
    for method in ("gaussian", "linear"):
        out = outcome(ops.soft_nms, boxes, scores, thr, 0.5, 0.001, method)
        assert out is not None
        keep, kept = out
        rk, rs = ref.soft_nms(b, s, thr, 0.5, 0.001, method)
        np.testing.assert_array_equal(keep, rk)
        np.testing.assert_allclose(kept, rs, rtol=1e-6)
        assert (kept[:-1] >= kept[1:]).all()


@FUZZ
@given(boxes_and_scores(max_n=8), reals(), reals(), reals())
def fuzz_soft_nms_parameters(bs, sigma, score_threshold, thr):
    boxes, scores = bs
    for method in ("gaussian", "linear", "bad"):
        out = outcome(ops.soft_nms, boxes, scores, thr, sigma, score_threshold, method)
        if out is not None:
            keep, kept = out
            assert keep.dtype == np.int64 and keep.shape == kept.shape
            assert len(np.unique(keep)) == len(keep)
            assert (kept >= score_threshold).all() and (kept[:-1] >= kept[1:]).all()


# ----------------------------------------------------------------------------- integral images
@FUZZ
@given(st.one_of(
    layouts(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9))),
    float_arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7)),
    layouts(hnp.arrays(st.sampled_from([np.int16, np.int64, np.bool_, np.float16]),
                       hnp.array_shapes(min_dims=2, max_dims=2, max_side=6)))),
    st.booleans(), st.booleans(), st.sampled_from([None, np.int32, np.int64, np.float64, np.float32]))
def fuzz_integral_image(img, squared, tilted, dtype):
    out = outcome(ops.integral_image, img, squared=squared, tilted=tilted, dtype=dtype)
    if out is None:
        return
    img = np.asarray(img)
    assert img.ndim == 2
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == 1 + squared + tilted
    for table in out:
        assert table.shape == (img.shape[0] + 1, img.shape[1] + 1)
    s, q, t = ref_integral.integral_tables(img.astype(np.uint8) if img.dtype.kind in "iub" else
                                           img.astype(np.float64))
    expected = [s] + ([q] if squared else []) + ([t] if tilted else [])
    for got, want in zip(out, expected):
        if img.dtype.kind in "iub":
            np.testing.assert_array_equal(got, want)
        elif np.isfinite(want).all() and np.abs(img).max(initial=0) < 1e100:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max(initial=1))


# ----------------------------------------------------------------------------- RoI align / pool
def optional_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def roi_values():
    return st.one_of(st.floats(-6, 14), st.sampled_from(EXTREMES[:-3]))


@FUZZ
@given(float_arrays(st.tuples(st.integers(1, 2), st.integers(0, 2), st.integers(1, 5), st.integers(1, 5)),
                    elements=st.one_of(st.floats(-10, 10), st.sampled_from([0.0, 1e30, -1e30]))),
       st.integers(0, 3).flatmap(lambda k: hnp.arrays(np.float64, (k, 4), elements=roi_values())),
       st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)),
                 st.sampled_from([0, -1, 2**31, (2**40, 1)])),
       st.one_of(st.sampled_from([1.0, 0.5, 0.25]), reals(-1, 4), st.sampled_from([1e10, 1e300])),
       st.one_of(st.integers(-2, 3), st.sampled_from([256, 257, 2**31, 2**63])),
       st.booleans(), st.booleans())
def fuzz_roi(x, xyxy, output_size, scale, sampling_ratio, aligned, with_torch):
    n = x.shape[0]
    rois = np.concatenate([np.arange(len(xyxy))[:, None] % n, xyxy], axis=1).astype(x.dtype)
    torch = optional_torch()
    if with_torch and torch is not None:
        xt = torch.tensor(x.copy(), requires_grad=True)
        a = outcome(ops.roi_align, xt, torch.tensor(rois), output_size, scale, sampling_ratio, aligned)
        p = outcome(ops.roi_pool, xt, torch.tensor(rois), output_size, scale)
        for out in (a, p):
            if out is not None:
                (g,) = torch.autograd.grad(out.sum(), xt, allow_unused=True)
                assert g is None or (g.shape == xt.shape and torch.isfinite(g).all())
        a = None if a is None else a.detach().numpy()
        p = None if p is None else p.detach().numpy()
    else:
        a = outcome(ops.roi_align, x, rois, output_size, scale, sampling_ratio, aligned)
        p = outcome(ops.roi_pool, x, rois, output_size, scale)
    ok = (np.isfinite(rois).all() and np.isfinite(scale) and scale > 0 and
          np.all(np.array(output_size) >= 1) and np.all(np.array(output_size) < 2**31))
    assert (p is None) == (not ok)
    assert (a is None) == (not ok or sampling_ratio > 256)
    if p is None:
        return
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    bound = np.abs(x).max(initial=0)
    assert p.shape == (len(rois), x.shape[1], ph, pw) and p.dtype == x.dtype
    assert set(p.ravel().tolist()) <= set(x.ravel().tolist()) | {0.0}
    if a is None:
        return
    assert a.shape == p.shape and a.dtype == x.dtype
    assert np.isfinite(a).all() and (np.abs(a) <= bound * (1 + 1e-5)).all()  # means of the map
    # The brute-force reference, where its loops stay short.
    if np.abs(xyxy).max(initial=0) * scale < 20 and sampling_ratio <= 3 and x.dtype == np.float64:
        np.testing.assert_allclose(a, ref_roi.roi_align(x, rois, (ph, pw), scale, sampling_ratio, aligned),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(p, ref_roi.roi_pool(x, rois, (ph, pw), scale))


# ----------------------------------------------------------------------------- segmentation
def small_images():
    shapes = st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
                       st.tuples(st.integers(1, 8), st.integers(1, 8), st.sampled_from([1, 2, 3, 4])),
                       st.sampled_from([(0, 3), (3, 0, 3), (2,)]))
    uint8 = layouts(hnp.arrays(np.uint8, shapes))
    return st.one_of(
        uint8, uint8,
        float_arrays(shapes, elements=st.one_of(st.floats(0, 1), st.floats(0, 1),
                                                st.sampled_from([-1.0, 2.0, float("nan")]))),
        layouts(hnp.arrays(st.sampled_from([np.int64, np.bool_]), shapes)))


def check_labels(labels, shape):
    assert labels.dtype == np.int32 and labels.shape == shape
    first = np.unique(labels.ravel(), return_index=True)[1]
    # 0..n-1, numbered in raster order of first appearance
    np.testing.assert_array_equal(np.unique(labels), np.arange(len(first)))
    assert (np.diff(first) > 0).all()


@FUZZ
@given(small_images(), reals(0.1, 1e3), st.one_of(reals(0, 3), st.sampled_from([1e3, 1e6])),
       st.one_of(st.integers(0, 50), st.integers(0, 50), st.sampled_from([-1, 2**31, 2**63])))
def fuzz_felzenszwalb(img, scale, sigma, min_size):
    labels = outcome(ops.felzenszwalb, img, scale, sigma, min_size)
    if labels is not None:
        check_labels(labels, np.asarray(img).shape[:2])
        assert 0 <= sigma <= 1000 and scale > 0 and min_size >= 0


@FUZZ
@given(small_images(), st.sampled_from(["single", "single", "fast", "bad"]),
       st.one_of(st.integers(0, 3), st.integers(0, 3), st.sampled_from([-1, 2**64 - 1, 2**64])),
       st.one_of(st.none(), st.integers(0, 30), st.sampled_from([-1, 2**63])),
       st.one_of(st.none(), st.integers(1, 20), st.sampled_from([0, 2**63])),
       st.one_of(st.integers(0, 12), st.integers(0, 12), st.sampled_from([65535, 65536, 2**63])))
def fuzz_selective_search(img, mode, seed, max_boxes, min_size, max_size):
    kwargs = {} if max_size == 0 else {"max_size": max_size}
    boxes = outcome(ops.selective_search, img, mode, seed, max_boxes, min_size, **kwargs)
    if boxes is None:
        return
    h, w = np.asarray(img).shape[:2]
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert max_boxes is None or len(boxes) <= max_boxes
    assert len(boxes) >= 1 or max_boxes == 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


# ----------------------------------------------------------------------------- Haar features
@FUZZ
@given(st.tuples(st.integers(2, 7), st.integers(2, 7)), st.sampled_from(["basic", "core", "all", "skimage"]),
       st.integers(0, 4), st.sampled_from(["exact", "wrong_shape", "float", "int64", "2d"]),
       st.booleans(), st.randoms(use_true_random=False))
def fuzz_haar_features(window, mode, n, kind, normalize, rnd):
    from pydetect.cascade import HaarFeatures

    bank = outcome(HaarFeatures, window, mode)
    if bank is None:
        return
    h, w = window
    data = np.array([rnd.randrange(256) for _ in range(n * h * w)], np.uint8).reshape(n, h, w)
    if kind == "wrong_shape":
        data = data[:, :, :-1]
    elif kind == "float":
        data = data.astype(np.float64)
    elif kind == "int64":
        data = data.astype(np.int64)
    elif kind == "2d":
        data = data[0] if n else np.zeros((h, w), np.uint8)
    values = outcome(bank.compute, data, normalize=normalize)
    if values is None:
        return
    rows = 1 if data.ndim == 2 else len(data)
    assert values.dtype == np.float32 and values.shape == (rows, len(bank))
    assert np.isfinite(values).all()


# ----------------------------------------------------------------------------- ISM voting
def votes_and_weights():
    """(votes (n, 3), weights (n,) or None), mostly finite; now and then a bad value."""
    finite = st.one_of(st.floats(-1e3, 1e3), st.floats(0.01, 10), st.sampled_from(EXTREMES[:-3]))
    def both(n):
        return st.tuples(float_arrays((n, 3), elements=st.one_of(finite, finite, finite, reals())),
                         st.one_of(st.none(), float_arrays((n,), elements=st.one_of(st.floats(0, 10), reals(0, 10))),
                                   float_arrays((n + 1,))))
    return st.integers(0, 8).flatmap(both)


@FUZZ
@given(votes_and_weights(), reals(0.01, 2), reals(0.01, 2), st.booleans(), st.sampled_from(["flat", "epanechnikov"]),
       st.one_of(st.integers(1, 20), st.sampled_from([0, 2**63])))
def fuzz_ism(vw, bandwidth_xy, bandwidth_scale, adaptive, kernel, max_iter):
    from pydetect.ism import bin_seeds, mean_shift

    votes, weights = vw

    seeds = outcome(bin_seeds, votes, weights, bandwidth_xy=bandwidth_xy, bandwidth_scale=bandwidth_scale,
                    adaptive=adaptive)
    if seeds is not None:
        assert seeds.dtype == votes.dtype and seeds.ndim == 2 and seeds.shape[1] == 3
        assert len(seeds) <= len(votes) and np.isfinite(seeds).all()
    out = outcome(mean_shift, votes, weights, seeds, bandwidth_xy=bandwidth_xy, bandwidth_scale=bandwidth_scale,
                  adaptive=adaptive, kernel=kernel, max_iter=max_iter)
    if out is None:
        return
    modes, scores, counts = out
    assert modes.shape == (len(scores), 3) and counts.shape == scores.shape
    assert np.isfinite(modes).all() and (scores >= 0).all() and (np.diff(scores) <= 0).all()
    assert counts.sum() <= (len(votes) if seeds is None else len(seeds))
