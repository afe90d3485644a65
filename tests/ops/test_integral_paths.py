"""Integral images on the code paths that small images do not reach.

uint8 tables are built by SIMD row kernels (AVX2 when the CPU has it, else SSE2) with the
running sums carried in int32 while the sum of squares fits and in float64 beyond (rows
wider than 33025 pixels of 255), and scalar tails after the 16-pixel blocks. Each must
give the same tables as numpy's cumulative sums (sum, squared sum) and OpenCV (all three),
whatever the thread count.
"""

import numpy as np
import pytest

import pydetect
from pydetect import ops


def _cumsum_tables(img):
    """Sum and squared-sum tables in OpenCV's layout from numpy cumulative sums (int64)."""
    v = img.astype(np.int64)
    s = np.zeros((img.shape[0] + 1, img.shape[1] + 1), np.int64)
    q = np.zeros_like(s)
    s[1:, 1:] = v.cumsum(0).cumsum(1)
    q[1:, 1:] = (v * v).cumsum(0).cumsum(1)
    return s, q


@pytest.fixture
def threads():
    before = pydetect.get_num_threads()
    yield pydetect.set_num_threads
    pydetect.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(720, 803), (14, 40000)])
def test_large_images_all_thread_counts(rng, threads, n_threads, shape):
    # 803 is not a multiple of 16; 40000 > 33025: the squares' carries leave int32.
    threads(n_threads)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[:, -5:] = 255  # the largest squares at the end of the long rows
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    rs, rq = _cumsum_tables(img)
    np.testing.assert_array_equal(s, rs)  # no wrap-around: image sum < 2**31
    np.testing.assert_array_equal(q, rq.astype(np.float64))
    s64 = ops.integral_image(img, dtype=np.float64)
    np.testing.assert_array_equal(s64, rs.astype(np.float64))
    s2, q2 = ops.integral_image(img, squared=True)
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(q2, q)
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the peer for the tilted table")
    cs, cq, ct = cv2.integral3(img)
    np.testing.assert_array_equal(s, cs)
    np.testing.assert_array_equal(q, cq)
    np.testing.assert_array_equal(t, ct)


def test_wide_rows_single_thread(rng, threads):
    # Rows wider than 33025 pixels of 255: the running sum of squares passes 2**31 within
    # the row, so the float64 carry path must take over.
    threads(1)
    img = np.full((3, 40000), 255, np.uint8)
    img[1] = rng.integers(0, 256, 40000, dtype=np.uint8)
    s, q = ops.integral_image(img, squared=True)
    rs, rq = _cumsum_tables(img)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(q, rq.astype(np.float64))
    assert q[1, -1] == 40000 * 255.0**2 > 2**31


@pytest.mark.parametrize("width", list(range(1, 40)) + [47, 48, 49, 63, 64, 65])
def test_every_tail_width(rng, width):
    # Widths around the 16-pixel SIMD blocks: scalar tails of every length.
    img = rng.integers(0, 256, (5, width), dtype=np.uint8)
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    rs, rq = _cumsum_tables(img)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(q, rq.astype(np.float64))
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the peer for the tilted table")
    np.testing.assert_array_equal(t, cv2.integral3(img)[2])


@pytest.mark.parametrize("width", [1, 2, 15, 16, 17, 31, 33, 64, 65, 803])
def test_int64_tables_every_tail_width(rng, width):
    # int64 tables: the row's running sum from the uint32 row kernels, widened (SIMD blocks
    # and scalar tails), the tilted table on uint64 accumulators.
    img = rng.integers(0, 256, (7, width), dtype=np.uint8)
    s, q, t = ops.integral_image(img, squared=True, tilted=True, dtype=np.int64)
    assert s.dtype == t.dtype == np.int64
    rs, rq = _cumsum_tables(img)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(q, rq.astype(np.float64))
    np.testing.assert_array_equal(t, ops.integral_image(img, tilted=True, dtype=np.float64)[1])


def test_int64_default_past_int32():
    # 9M pixels of (mostly) 255 sum past 2**31: the default table is int64 (where cv2.integral's
    # int32 would wrap), computed on the row kernels; the float64 tables (generic loops for
    # the tilted one) are exact here and serve as the reference.
    img = np.full((2200, 4100), 255, np.uint8)
    img[::7, ::3] = 0
    s, t = ops.integral_image(img, tilted=True)
    assert s.dtype == np.int64 and s[-1, -1] == int(img.sum(dtype=np.int64)) > 2**31
    sf, tf = ops.integral_image(img, tilted=True, dtype=np.float64)
    np.testing.assert_array_equal(s, sf.astype(np.int64))
    np.testing.assert_array_equal(t, tf.astype(np.int64))


@pytest.mark.parametrize("width", [2047, 2064, 2065, 2081])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_streamed_int64_tables_into_any_alignment(rng, width, offset):
    # int64 tables of 32 MB and more are streamed out row by row (non-temporal stores from
    # 32-byte aligned addresses, scalar steps before and after) from column sums kept in cache:
    # the same table whatever the width's tail and wherever the caller's rows start (out= at
    # 8 * offset bytes past an aligned buffer).
    h = (32 << 20) // (8 * (width + 1)) + 3
    img = rng.integers(0, 256, (h, width), dtype=np.uint8)
    buf = np.empty((h + 1) * (width + 1) + offset, np.int64)
    out = buf[offset:].reshape(h + 1, width + 1)
    got = ops.integral_image(img, dtype=np.int64, out=out)
    assert got is out
    np.testing.assert_array_equal(out, _cumsum_tables(img)[0])
