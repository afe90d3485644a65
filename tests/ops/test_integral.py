import numpy as np
import pytest

import _reference_cascade as ref
from pydetect import ops


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 8), (9, 4), (13, 13)])
def test_matches_definition(rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    rs, rq, rt = ref.integral_tables(img)
    assert s.dtype == np.int32 and q.dtype == np.float64 and t.dtype == np.int32
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(q, rq)
    np.testing.assert_array_equal(t, rt)


def test_return_forms(rng):
    img = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    s = ops.integral_image(img)
    assert isinstance(s, np.ndarray) and s.shape == (5, 7)
    s2, t = ops.integral_image(img, tilted=True)
    np.testing.assert_array_equal(s, s2)
    assert t.shape == (5, 7)
    s64 = ops.integral_image(img, dtype=np.float64)
    assert s64.dtype == np.float64
    np.testing.assert_array_equal(s64, s)


def test_hand_worked():
    img = np.array([[1, 2], [3, 4]], np.uint8)
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    np.testing.assert_array_equal(s, [[0, 0, 0], [0, 1, 3], [0, 4, 10]])
    np.testing.assert_array_equal(q, [[0, 0, 0], [0, 1, 5], [0, 10, 30]])
    # tilted(X, 2) = triangle from pixel (X-1, 1) upwards: row 1 x = X-1, row 0 x in X-2..X
    np.testing.assert_array_equal(t, [[0, 0, 0], [0, 1, 2], [1, 3 + 3, 4 + 3]])


def test_noncontiguous_and_torch(rng):
    torch = pytest.importorskip("torch", reason="torch in/out conversion")
    img = rng.integers(0, 256, (20, 30), dtype=np.uint8)[::2, ::3]
    s = ops.integral_image(img)
    np.testing.assert_array_equal(s, ref.integral_tables(img)[0])
    st = ops.integral_image(torch.from_numpy(np.ascontiguousarray(img)))
    assert isinstance(st, torch.Tensor)
    np.testing.assert_array_equal(st.numpy(), s)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="shape"):
        ops.integral_image(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        ops.integral_image(np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="finite"):
        ops.integral_image(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="dtype"):
        ops.integral_image(np.zeros((2, 3), np.uint8), dtype=np.float32)
    with pytest.raises(ValueError, match="0, 255"):
        ops.integral_image(np.full((2, 2), 300, np.int64))


def test_empty():
    s, q, t = ops.integral_image(np.zeros((0, 4), np.uint8), True, True)
    assert s.shape == (1, 5) and not s.any() and not q.any() and not t.any()


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (37, 61), (240, 320)])
def test_equals_cv2_uint8(rng, shape):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the peer for integral images")
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    cs, cq, ct = cv2.integral3(img)
    np.testing.assert_array_equal(s, cs)
    np.testing.assert_array_equal(q, cq)
    np.testing.assert_array_equal(t, ct)
    np.testing.assert_array_equal(ops.integral_image(img, dtype=np.float64),
                                  cv2.integral(img, sdepth=cv2.CV_64F))
    s2, q2 = ops.integral_image(img, squared=True)
    cs2, cq2 = cv2.integral2(img)
    np.testing.assert_array_equal(s2, cs2)
    np.testing.assert_array_equal(q2, cq2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_cv2_float(rng, dtype):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the peer for integral images")
    img = rng.random((120, 90)).astype(dtype)
    s, q, t = ops.integral_image(img, squared=True, tilted=True)
    cs, cq, ct = cv2.integral3(img)
    np.testing.assert_array_equal(s, cs)
    np.testing.assert_array_equal(q, cq)
    # The tilted table of a float image adds the same terms in another order than OpenCV
    # (two carried diagonal rows instead of its three-term recurrence), so it may differ
    # in the last bits on large images; uint8 tables are exact (see test above).
    np.testing.assert_allclose(t, ct, rtol=1e-12, atol=1e-9)


# ----------------------------------------------------------------------------- out=
@pytest.mark.parametrize("squared, tilted", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("image_dtype, dtype", [(np.uint8, None), (np.uint8, np.int64), (np.uint8, np.float64),
                                                (np.float32, None)])
def test_out_tables_equal_new_ones_and_are_returned_as_given(squared, tilted, image_dtype, dtype):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(23, 31)).astype(image_dtype)
    want = ops.integral_image(img, squared=squared, tilted=tilted, dtype=dtype)
    want = want if isinstance(want, tuple) else (want,)
    given = tuple(np.full_like(w, 7) for w in want)  # garbage the call must overwrite everywhere
    got = ops.integral_image(img, squared=squared, tilted=tilted, dtype=dtype,
                             out=given if len(given) > 1 else given[0])
    got = got if isinstance(got, tuple) else (got,)
    for g, o, w in zip(got, given, want):
        assert g is o
        np.testing.assert_array_equal(g, w)


def test_out_is_checked_before_anything_is_written():
    img = np.zeros((4, 5), np.uint8)
    good = np.zeros((5, 6), np.int32)
    cases = [
        ((good, good), "out must hold 1 array"),
        (np.zeros((5, 6), np.int64), "out\\[0\\] must be a writeable C-contiguous int32 array of shape \\(5, 6\\)"),
        (np.zeros((5, 7), np.int32), "shape \\(5, 6\\)"),
        (np.zeros((6, 5), np.int32).T, "C-contiguous"),
    ]
    for out, match in cases:
        with pytest.raises(ValueError, match=match):
            ops.integral_image(img, out=out)
    read_only = good.copy()
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        ops.integral_image(img, out=read_only)
    with pytest.raises(TypeError, match="numpy array"):
        ops.integral_image(img, out="table")
    with pytest.raises(ValueError, match="share memory"):
        ops.integral_image(img, squared=True, tilted=True,
                           out=(good, np.zeros((5, 6)), good))
    # The native boundary refuses a converted copy too (it would leave the caller's array unwritten).
    from pydetect import _C
    with pytest.raises(ValueError, match="out_sum must be a numpy array of dtype int32"):
        _C.integral_image(img, False, False, _C.IntegralSum.INT32, out_sum=np.zeros((5, 6), np.int64))
