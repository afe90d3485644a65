"""Extreme inputs to the op families: RoI align / pool, NMS, ISM voting, Felzenszwalb and
selective search, threads, integral images.

Each snippet runs in a child interpreter (run_isolated), so that a crash (the out-of-bounds
writes, aborts and undefined float -> int conversions these tests were written against)
fails one test instead of killing the suite. Snippets assert their own expectations,
against the brute-force references of tests/_reference*.py where one is cheap.
"""

import importlib.util

import pytest

from _isolated import run_isolated

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the autograd path needs torch")

# ----------------------------------------------------------------------------- RoI align / pool


@needs_torch
def test_roi_align_sampling_ratio_above_the_maximum_is_refused():
    # 2**31 samples per axis: the sample table's size wrapped, then out-of-bounds writes.
    run_isolated("""
        import numpy as np, pytest, torch
        import _reference_roi as ref
        from pydetect import ops, _C
        from pydetect.ops.roi import MAX_SAMPLING_RATIO
        assert MAX_SAMPLING_RATIO == 256
        x = np.zeros((1, 1, 8, 8))
        rois = np.array([[0, 0, 0, 4, 4.]])
        for sampling_ratio in (257, 2**31, 2**63):
            with pytest.raises(ValueError, match="sampling_ratio"):
                ops.roi_align(x, rois, 2, sampling_ratio=sampling_ratio)
            with pytest.raises(ValueError, match="sampling_ratio"):
                ops.roi_align(torch.zeros(1, 1, 8, 8, requires_grad=True), torch.tensor(rois), 2,
                              sampling_ratio=sampling_ratio)
            with pytest.raises(ValueError, match="sampling_ratio"):
                ops.MultiScaleRoIAlign(["0"], 2, sampling_ratio)
            if sampling_ratio < 2**63:  # the private kernels refuse it too
                with pytest.raises(ValueError, match="sampling_ratio"):
                    _C.roi_align_forward(x, rois, 1.0, 2, 2, sampling_ratio, False)
                with pytest.raises(ValueError, match="sampling_ratio"):
                    _C.roi_align_backward(np.zeros((1, 1, 2, 2)), rois, 1.0, 2, 2, 1, 1, 8, 8, sampling_ratio, False)
        # The maximum itself is accepted and is the average of its 256 x 256 samples.
        x = np.random.default_rng(0).normal(size=(1, 1, 8, 8))
        np.testing.assert_allclose(ops.roi_align(x, rois, 1, sampling_ratio=256),
                                   ref.roi_align(x, rois, (1, 1), 1.0, 256), rtol=1e-12, atol=1e-12)
    """)


def test_roi_align_adaptive_grid_of_huge_boxes_is_clamped():
    # A 2**32-pixel bin made grid_h * grid_w = 2**64 wrap to 0: an empty table, then
    # 2**64 writes through it. Adaptive counts are now clamped to MAX_SAMPLING_RATIO per
    # axis; the expected values are the bin means over those grids, by brute force.
    run_isolated("""
        import numpy as np
        import _reference_roi as ref
        from pydetect import ops
        x = np.random.default_rng(0).normal(size=(1, 2, 8, 8))

        def one_bin(box, gh, gw):  # 1 x 1 output, aligned=False
            bh, bw = max(box[3] - box[1], 1.0), max(box[2] - box[0], 1.0)
            ys = [box[1] + (i + 0.5) * bh / gh for i in range(gh)]
            xs = [box[0] + (i + 0.5) * bw / gw for i in range(gw)]
            return [np.mean([ref.bilinear(x[0, c], y, xx) for y in ys for xx in xs]) for c in range(2)]

        for box, gh, gw in (([0, 0, 2.0**32, 2.0**32], 256, 256), ([-300, -300, 300, 300], 256, 256),
                            ([0, 0, 1e19, 8], 8, 256), ([-2, 0.5, 250, 8], 8, 252)):
            out = ops.roi_align(x, np.array([[0.0] + box]), 1)
            np.testing.assert_allclose(out[0, :, 0, 0], one_bin(box, gh, gw), rtol=1e-12, atol=1e-12)
    """)


@needs_torch
def test_roi_ops_with_huge_finite_boxes_and_scales():
    # Boxes near the dtype's limit, 1e30, a scale that overflows float32: forward and
    # backward stay finite (means and maxima of the map), without overflowed grids.
    run_isolated("""
        import numpy as np, torch
        from pydetect import ops
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            big = float(np.finfo(dtype).max) / 2
            x = torch.tensor(rng.normal(size=(2, 3, 6, 7)), dtype=getattr(torch, np.dtype(dtype).name),
                             requires_grad=True)
            rois = torch.tensor([[0, -big, -big, big, big], [1, 0, 0, big, big], [0, 1e30, 0, 2, 2],
                                 [1, -big, 0, -big / 2, 5], [0, 0, 0, 3, 3]], dtype=x.dtype)
            bound = x.detach().abs().max()
            values = set(x.detach().numpy().ravel().tolist()) | {0.0}
            for scale in (1.0, 1e300):
                for aligned, sr in ((False, -1), (True, 0), (True, 2)):
                    out = ops.roi_align(x, rois, (3, 2), scale, sr, aligned)
                    assert out.shape == (5, 3, 3, 2) and torch.isfinite(out).all()
                    assert (out.abs() <= bound * (1 + 1e-5)).all()
                    (g,) = torch.autograd.grad(out.sum(), x)
                    assert torch.isfinite(g).all()
                out = ops.roi_pool(x, rois, (3, 2), scale)
                assert set(out.detach().numpy().ravel().tolist()) <= values
                (g,) = torch.autograd.grad(out.sum(), x)
                assert torch.isfinite(g).all()
    """)


def test_roi_pool_window_beyond_int64_is_clipped_not_wrapped():
    # round(1e19) does not fit in int64: the conversion was undefined (INT64_MIN on x86),
    # which shrank the whole-map window to one pixel. The window is the whole map.
    run_isolated("""
        import numpy as np
        import _reference_roi as ref
        from pydetect import ops
        x = np.random.default_rng(1).normal(size=(1, 2, 5, 6))
        for dtype in (np.float32, np.float64):
            xd = x.astype(dtype)
            out = ops.roi_pool(xd, np.array([[0, 0, 0, 1e19, 1e19]], dtype), 1)
            np.testing.assert_array_equal(out[0, :, 0, 0], xd[0].max(axis=(1, 2)))
            out = ops.roi_pool(xd, np.array([[0, -1e19, -1e19, 1e19, 1e19]], dtype), 2)
            # bins of 1e19 pixels: the last row / column of bins holds the whole map.
            np.testing.assert_array_equal(out[0, :, 1, 1], xd[0].max(axis=(1, 2)))
        # Integer windows beyond int32 (torchvision's int) but exact in double.
        rois = np.array([[0, -2.0**40, -2.0**40, 2.0**40, 2.0**40]])
        np.testing.assert_array_equal(ops.roi_pool(x, rois, 3), ref.roi_pool(x, rois, (3, 3)))
    """)


def test_roi_output_size_beyond_int32_is_refused():
    run_isolated("""
        import numpy as np, pytest
        from pydetect import ops, _C
        x = np.zeros((1, 1, 4, 4))
        rois = np.zeros((0, 5))
        for size in ((2**31, 1), (2**40, 2**40)):
            with pytest.raises(ValueError, match="output_size"):
                ops.roi_align(x, rois, size)
            with pytest.raises(ValueError, match="output_size"):
                ops.roi_pool(x, rois, size)
            with pytest.raises(ValueError, match="output_size"):
                _C.roi_align_backward(np.zeros((0, 1, 1, 1)), rois, 1.0, size[0], size[1], 1, 1, 4, 4, 0, False)
    """)


# ----------------------------------------------------------------------------- NMS


def test_nms_family_with_extreme_float64_coordinates():
    # Spans of +-1e308 overflow to infinity: the grid path (>= 400 boxes) turned that into
    # a NaN cell count and asked for a vector of 2**64 cells.
    run_isolated("""
        import numpy as np
        import _reference as ref
        from pydetect import ops, _C
        from pydetect.ops.nms import nms_with_algorithm
        rng = np.random.default_rng(0)
        extreme = np.array([[-1e308, 0, -1e308 + 1e300, 1], [1e308 - 1e300, 0, 1e308, 1],
                            [-1e308, -1e308, 1e308, 1e308], [-1.7e308, -1.7e308, 1.7e308, 1.7e308],
                            [1e307, 1e307, 1.5e307, 1.5e307], [0, 0, 1e-300, 1e-300],
                            [-5e307, 2, 5e307, 3], [2.0**63, 2.0**63, 2.0**64, 2.0**64]])
        filler, _ = ref.clustered_boxes(rng, 420, np.float64, num_clusters=6)
        for boxes in (np.concatenate([extreme[:2], filler]),  # only the x span overflows
                      np.concatenate([extreme, filler]), np.concatenate([np.repeat(extreme, 10, 0), filler])):
            scores = rng.random(len(boxes))
            for thr in (0.0, 0.5, 1.0):
                expected = ref.nms(boxes, scores, thr)
                np.testing.assert_array_equal(ops.nms(boxes, scores, thr), expected)
                for algorithm in ("compaction", "grid"):
                    np.testing.assert_array_equal(nms_with_algorithm(boxes, scores, thr, algorithm), expected)
            labels = rng.integers(0, 3, len(boxes))
            np.testing.assert_array_equal(ops.batched_nms(boxes, scores, labels, 0.5),
                                          ref.batched_nms(boxes, scores, labels, 0.5))
        boxes = np.concatenate([extreme, filler[:30]])
        scores = rng.random(len(boxes))
        for method in ("gaussian", "linear"):
            keep, kept = ops.soft_nms(boxes, scores, 0.3, 0.5, 0.001, method)
            rk, rs = ref.soft_nms(boxes, scores, 0.3, 0.5, 0.001, method)
            np.testing.assert_array_equal(keep, rk)
            np.testing.assert_allclose(kept, rs, rtol=1e-12)
    """)


def test_nms_float32_extremes():
    run_isolated("""
        import numpy as np
        import _reference as ref
        from pydetect import ops
        rng = np.random.default_rng(1)
        m = np.finfo(np.float32).max
        extreme = np.array([[-m, -m, m, m], [-m, 0, m, 1], [m / 2, m / 2, m, m], [0, 0, 1, 1]], np.float32)
        filler, _ = ref.clustered_boxes(rng, 410, np.float32, num_clusters=5)
        boxes = np.concatenate([extreme, filler])
        scores = rng.random(len(boxes)).astype(np.float32)
        np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), ref.nms(boxes, scores, 0.5))
    """)


# ----------------------------------------------------------------------------- ISM voting


def test_mean_shift_votes_spread_over_the_float64_range():
    # The grid's cell count was int64(floor(inf / inf)): undefined, then a negative table.
    run_isolated("""
        import numpy as np
        from pydetect.ism import mean_shift, bin_seeds
        votes = np.array([[-1e308, -1e308, 1.0], [1e308, 1e308, 1.0], [0, 0, 1.0], [0.01, 0, 1.0],
                          [1.7e308, -1.7e308, 2.0]])
        for adaptive in (False, True):
            modes, scores, counts = mean_shift(votes, bandwidth_xy=0.1, bandwidth_scale=0.3, adaptive=adaptive)
            assert np.isfinite(modes).all() and len(modes) == 4, modes
            assert counts.sum() == len(votes)
            # The two votes near 0 merge into one mode at their mean; the others stay alone.
            assert any(np.allclose(m, [0.005, 0, 1.0]) for m in modes)
        modes, _, _ = mean_shift(votes, bandwidth_xy=1e300, bandwidth_scale=1e300, adaptive=False)
        assert np.isfinite(modes).all()
        seeds = bin_seeds(votes, bandwidth_xy=0.1, bandwidth_scale=0.3)
        assert np.isfinite(seeds).all() and len(seeds) == 4
        # Bins of a tiny (underflowing) and a huge width: keys beyond int64 and infinite.
        for bxy in (1e-300, 1e300):
            seeds = bin_seeds(votes * [1, 1, 1e-300], bandwidth_xy=bxy, bandwidth_scale=1e-10)
            assert np.isfinite(seeds).all() and 1 <= len(seeds) <= len(votes)
    """)


def test_ism_weighted_means_near_the_float64_limit():
    # Seeds and modes are weighted means: sums of weight x coordinate overflowed to inf
    # (then NaN modes, or seeds the mean-shift refuses), though every mean is finite.
    run_isolated("""
        import numpy as np, pytest
        from pydetect.ism import mean_shift, bin_seeds
        votes = np.array([[1.5e308, -1.5e308, 1.0], [1.6e308, -1.6e308, 1.0], [0, 0, 1.0]])
        weights = np.array([10.0, 30.0, 1.0])
        seeds = bin_seeds(votes, weights, bandwidth_xy=1e308, bandwidth_scale=0.3, adaptive=False)
        np.testing.assert_allclose(seeds, [[1.575e308, -1.575e308, 1.0], [0, 0, 1.0]], rtol=1e-12)
        modes, scores, counts = mean_shift(votes, weights, seeds, bandwidth_xy=1e308, bandwidth_scale=0.3,
                                           adaptive=False)
        np.testing.assert_allclose(modes, seeds, rtol=1e-12)
        np.testing.assert_array_equal(scores, [40.0, 1.0])
        with pytest.raises(ValueError, match="weights"):
            mean_shift(votes, [1e308, 1e308, 1.0])
        with pytest.raises(ValueError, match="weights"):
            bin_seeds(votes, [1.0, -1.0, 1.0])
    """)


@pytest.mark.parametrize("bad", ["float('nan')", "float('inf')", "-1.0", "0.0"])
def test_ism_bandwidths_must_be_finite_and_positive(bad):
    run_isolated(f"""
        import numpy as np, pytest
        from pydetect.ism import mean_shift, bin_seeds
        votes = np.array([[0, 0, 1.0], [1, 1, 2.0]])
        for name in ("bandwidth_xy", "bandwidth_scale"):
            with pytest.raises(ValueError, match=name):
                bin_seeds(votes, **{{name: {bad}}})
            with pytest.raises(ValueError, match=name):
                mean_shift(votes, **{{name: {bad}}})
        with pytest.raises(ValueError, match="min_mass"):
            bin_seeds(votes, min_mass=float("nan"))
    """)


@pytest.mark.parametrize("sigma", ["1e300", "1e6", "float('inf')", "float('nan')"])
def test_felzenszwalb_huge_sigma_is_refused(sigma):
    # int(4 sigma + 0.5) taps: undefined for 1e300, a 64 MB kernel and a hang for 1e6.
    run_isolated(f"""
        import numpy as np, pytest
        from pydetect import ops, _C
        from pydetect.ops.segmentation import MAX_GAUSSIAN_SIGMA
        img = np.zeros((4, 5, 3), np.uint8)
        with pytest.raises(ValueError, match="sigma"):
            ops.felzenszwalb(img, sigma={sigma})
        if {sigma} == {sigma}:  # not NaN: the private kernel refuses it too
            with pytest.raises(ValueError, match="sigma"):
                _C.felzenszwalb(np.zeros((4, 5, 3), np.float32), 1.0, {sigma}, 20)
        # The maximum itself is accepted (a 4000-pixel radius on a 4 x 5 image: constant).
        labels = ops.felzenszwalb(img, sigma=MAX_GAUSSIAN_SIGMA, min_size=0)
        assert (labels == 0).all()
    """)


# ----------------------------------------------------------------------------- selective search


def test_selective_search_labels_beyond_the_pixel_count_are_refused():
    # labels.max() + 1 overflowed int32 for INT32_MAX, and a stray huge label sized
    # per-region tables (n x 240 histograms) from it.
    run_isolated("""
        import numpy as np, pytest
        from pydetect import _C
        image = np.zeros((3, 4, 3), np.float32)
        for bad in (2**31 - 1, 12, 10**6):
            labels = np.zeros((3, 4), np.int32)
            labels[1, 2] = bad
            for fn in (lambda: _C.ss_region_features(image, labels), lambda: _C.ss_hierarchy(image, labels, list(_C.SimilarityTerm.__members__.values()))):
                with pytest.raises(ValueError, match="labels"):
                    fn()
        labels = np.arange(12, dtype=np.int32).reshape(3, 4)
        sizes = _C.ss_region_features(image, labels)[0]
        assert (sizes == 1).all()
    """)


def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


@pytest.mark.slow
@pytest.mark.skipif(_mem_available_gib() < 48, reason="needs ~35 GiB of memory (9M regions)")
def test_region_features_with_more_regions_than_int32_histogram_indices():
    # 9M regions x 240 texture bins > 2**31: the histogram indices were int32 products
    # (label x bins), negative past 8.9M regions. Reachable from selective_search with
    # min_size 1 on a large image; here the labels are given: one region per pixel.
    run_isolated("""
        import numpy as np
        from pydetect import _C
        h = w = 3000
        image = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
        labels = np.arange(h * w, dtype=np.int32).reshape(h, w)
        sizes, boxes, color, texture, neighbours = _C.ss_region_features(image, labels)
        assert (sizes == 1).all()
        last = h * w - 1
        np.testing.assert_array_equal(boxes[last], [w - 1, h - 1, w - 1, h - 1])
        np.testing.assert_allclose(color[last].sum(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(texture[last].sum(), 1.0, rtol=1e-6)
        assert (color[last].reshape(3, 25).argmax(1) == np.minimum((image[-1, -1] * 25).astype(int), 24)).all()
    """, timeout=1800)


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("n", [1025, 2**31, 2**63, 10**30])
def test_set_num_threads_above_the_cap_is_refused(n):
    run_isolated(f"""
        import pytest, pydetect
        from pydetect import _C
        before = pydetect.get_num_threads()
        from pydetect._validation import MAX_THREADS
        assert pydetect.MAX_NUM_THREADS == MAX_THREADS == 1024
        with pytest.raises(ValueError, match="1024"):
            pydetect.set_num_threads({n})
        assert pydetect.get_num_threads() == before
        if {n} < 2**31:
            with pytest.raises(ValueError, match="1024"):
                _C.set_num_threads({n})
        for bad in (1.5, "4", None, True):
            with pytest.raises(TypeError, match="n"):
                pydetect.set_num_threads(bad)
        with pytest.raises(ValueError, match="n"):
            pydetect.set_num_threads(0)
        pydetect.set_num_threads(1024)
        assert pydetect.get_num_threads() == 1024
    """)


@pytest.mark.parametrize("headroom_mib", [4, 12])
def test_parallel_for_survives_threads_the_system_refuses(headroom_mib):
    # With the address space capped just above its current size, no new thread (4 MiB) or
    # one (12 MiB) can map its 8 MiB stack: std::thread throws std::system_error, which
    # escaped the pool, with a helper already running std::terminate. The work now runs
    # on the threads it got.
    run_isolated(f"""
        import re, resource
        import numpy as np
        import pydetect
        from pydetect import ops
        rng = np.random.default_rng(0)
        boxes = np.tile(rng.uniform(0, 50, (200, 2)), 2) + np.repeat([[0, 0, 20, 20]], 200, 0)
        scores = rng.random(200)
        labels = np.arange(200) % 40
        pydetect.set_num_threads(1)
        expected = ops.batched_nms(boxes, scores, labels, 0.3)
        pydetect.set_num_threads(16)
        vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm + ({headroom_mib} << 20), hard))
        try:
            keep = ops.batched_nms(boxes, scores, labels, 0.3)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        np.testing.assert_array_equal(keep, expected)
    """)


# ----------------------------------------------------------------------------- integral images


def test_integral_image_of_a_sum_beyond_int32_is_int64():
    # 3000 x 3000 pixels of 255 sum to 2.295e9 > 2**31 - 1: the default int32 table wrapped.
    # 6000 columns, so that the tilted table's largest triangles (~9M pixels) pass 2**31 too.
    # References: the float64 tables (exact integers, built by the other, SIMD, code path)
    # everywhere, and the definitions at a few entries.
    run_isolated("""
        import numpy as np, pytest
        from pydetect import ops
        img = np.full((3000, 6000), 255, np.uint8)
        img[::7, ::5] = 3
        s, q, t = ops.integral_image(img, squared=True, tilted=True)
        assert s.dtype == np.int64 and t.dtype == np.int64 and q.dtype == np.float64
        s64, q64, t64 = ops.integral_image(img, squared=True, tilted=True, dtype=np.float64)
        assert (s == s64).all() and (q == q64).all() and (t == t64).all()  # float64: exact below 2**53
        v = img.astype(np.int64)
        xs = np.arange(6000)
        for X, Y in ((0, 3000), (3000, 3000), (6000, 3000), (5999, 1700), (17, 2)):
            assert s[Y, X] == v[:Y, :X].sum() and q[Y, X] == (v[:Y, :X] ** 2).sum()
            assert t[Y, X] == sum(int(v[y, np.abs(xs - X + 1) <= Y - y - 1].sum()) for y in range(Y))
        assert s[-1, -1] > 2**31 and t.max() > 2**31
        # Explicit dtypes: int64 as the default; int32 refused rather than wrapped.
        assert (ops.integral_image(img, dtype=np.int64) == s).all()
        with pytest.raises(ValueError, match="int32"):
            ops.integral_image(img, dtype=np.int32)
        # Below the bound the default stays OpenCV's int32, and int32 stays allowed
        # for a large image whose sum fits.
        assert ops.integral_image(img[:2000, :4000 // 3]).dtype == np.int32
        small = np.zeros((3000, 3000), np.uint8)  # 255 * 9e6 > 2**31, but the sum is 2550
        small[0, :10] = 255
        s32 = ops.integral_image(small, dtype=np.int32)
        assert s32.dtype == np.int32 and s32[-1, -1] == 2550
    """)
