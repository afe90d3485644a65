"""ops.felzenszwalb against a brute-force union-find reference and scikit-image."""

import numpy as np
import pytest

import _reference_segmentation as ref
from pydetect import ops


def _blocky(rng, h, w, c, levels=3):
    """Piecewise-constant image: many exactly equal edge weights (tie order matters)."""
    small = rng.integers(0, levels, size=(h // 2 + 1, w // 2 + 1, c)) * 60
    img = np.repeat(np.repeat(small, 2, 0), 2, 1)[:h, :w]
    return img.astype(np.uint8)


@pytest.mark.parametrize("shape", [(7, 9), (6, 8, 3), (1, 11), (9, 1, 3), (5, 5, 2)])
@pytest.mark.parametrize("scale,sigma,min_size", [(1.0, 0.8, 0), (100.0, 0.8, 3), (300.0, 0.0, 5), (50.0, 1.5, 4)])
def test_matches_bruteforce_on_random_images(rng, shape, scale, sigma, min_size):
    img = rng.integers(0, 256, size=shape).astype(np.uint8)
    got = ops.felzenszwalb(img, scale=scale, sigma=sigma, min_size=min_size)
    want = ref.felzenszwalb(img.astype(np.float32) / np.float32(255), scale, sigma, min_size)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("scale,min_size", [(1.0, 0), (200.0, 4), (2000.0, 2)])
def test_matches_bruteforce_with_tied_weights(rng, c, scale, min_size):
    img = _blocky(rng, 9, 10, c)
    got = ops.felzenszwalb(img, scale=scale, sigma=0, min_size=min_size)
    want = ref.felzenszwalb(img.astype(np.float32) / np.float32(255), scale, 0, min_size)
    np.testing.assert_array_equal(got, want)


def test_labels_dtype_range_and_min_size(rng):
    img = rng.integers(0, 256, size=(40, 50, 3)).astype(np.uint8)
    labels = ops.felzenszwalb(img, scale=10, sigma=0.5, min_size=15)
    assert labels.dtype == np.int32 and labels.shape == (40, 50)
    n = labels.max() + 1
    counts = np.bincount(labels.ravel())
    assert len(counts) == n and counts.min() >= 15  # 0..n-1 all used, small ones merged
    # labels are numbered by first appearance in raster order
    _, first = np.unique(labels.ravel(), return_index=True)
    assert np.all(np.diff(first) > 0)


def test_one_pixel_and_constant_images():
    assert ops.felzenszwalb(np.zeros((1, 1), np.uint8)).tolist() == [[0]]
    lab = ops.felzenszwalb(np.full((30, 20, 3), 77, np.uint8), scale=1, min_size=0)
    assert (lab == 0).all()


def test_input_kinds_agree(rng):
    img = rng.integers(0, 256, size=(20, 30, 3)).astype(np.uint8)
    base = ops.felzenszwalb(img, scale=50)
    np.testing.assert_array_equal(ops.felzenszwalb(img.astype(np.float32) / np.float32(255), scale=50), base)
    np.testing.assert_array_equal(ops.felzenszwalb(img.astype(np.float32) / 255, scale=50), base)
    np.testing.assert_array_equal(ops.felzenszwalb(img.astype(np.int64), scale=50), base)
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, ::2] = img
    np.testing.assert_array_equal(ops.felzenszwalb(wide[:, ::2], scale=50), base)  # non-contiguous
    torch = pytest.importorskip("torch", reason="torch in -> torch out")
    out = ops.felzenszwalb(torch.from_numpy(img), scale=50)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), base)


def _boundaries(labels):
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


@pytest.mark.parametrize("name,scale", [("astronaut", 1.0), ("astronaut", 100.0), ("coffee", 300.0),
                                        ("camera", 100.0)])
def test_agrees_with_skimage(name, scale):
    pytest.importorskip("skimage", reason="scikit-image is the peer")
    from scipy import ndimage as ndi
    from skimage import data, segmentation

    img = getattr(data, name)()[::2, ::2]
    grey = img.ndim == 2
    want = segmentation.felzenszwalb(img, scale=scale, sigma=0.8, min_size=20,
                                     channel_axis=None if grey else -1)
    got = ops.felzenszwalb(img, scale=scale, sigma=0.8, min_size=20)
    n_got, n_want = got.max() + 1, want.max() + 1
    assert abs(n_got - n_want) <= 0.1 * n_want, (n_got, n_want)
    # boundary agreement: precision and recall of our boundary pixels within 1 px of theirs
    bg, bw = _boundaries(got), _boundaries(want)
    near = np.ones((3, 3), bool)
    precision = (bg & ndi.binary_dilation(bw, near)).sum() / max(bg.sum(), 1)
    recall = (bw & ndi.binary_dilation(bg, near)).sum() / max(bw.sum(), 1)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    # the segmentations are in fact (almost) identical: labels equal on >= 90% of pixels
    assert (got == want).mean() >= 0.9


@pytest.mark.parametrize("bad,exc", [
    (np.zeros((2, 3, 4, 1), np.uint8), ValueError),
    (np.zeros((0, 5), np.uint8), ValueError),
    (np.zeros((5,), np.uint8), ValueError),
    (np.full((4, 4), np.nan), ValueError),
    (np.zeros((4, 4), bool), TypeError),
    (np.array([["a", "b"]]), TypeError),
    (np.full((4, 4), 300, np.int32), ValueError),
])
def test_bad_images(bad, exc):
    with pytest.raises(exc, match="image"):
        ops.felzenszwalb(bad)


def test_bad_parameters():
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="scale"):
        ops.felzenszwalb(img, scale=0)
    with pytest.raises(ValueError, match="sigma"):
        ops.felzenszwalb(img, sigma=-1)
    with pytest.raises(ValueError, match="min_size"):
        ops.felzenszwalb(img, min_size=-1)
    with pytest.raises(TypeError, match="min_size"):
        ops.felzenszwalb(img, min_size=2.5)


def test_property_matches_bruteforce():
    pytest.importorskip("hypothesis", reason="property test")
    from hypothesis import given, settings, strategies as st
    from hypothesis.extra.numpy import arrays

    @settings(max_examples=40, deadline=None)
    @given(img=arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3]))),
           scale=st.floats(1, 2000), sigma=st.sampled_from([0.0, 0.5, 0.8]), min_size=st.integers(0, 8))
    def check(img, scale, sigma, min_size):
        got = ops.felzenszwalb(img, scale=scale, sigma=sigma, min_size=min_size)
        want = ref.felzenszwalb(img.astype(np.float32) / np.float32(255), scale, sigma, min_size)
        # equal partitions (labels are numbered the same way, by first appearance)
        np.testing.assert_array_equal(got, want)

    check()
