"""ISM Hough voting and balloon mean-shift against brute-force numpy and scikit-learn."""

import numpy as np
import pytest

import _reference_ism as ref
from pydetect.ism import accumulate_votes, bin_seeds, mean_shift


def _clusters(rng, centres, n=60, spread=0.04, clutter=30):
    centres = np.asarray(centres, np.float64)
    parts = [c + rng.normal(size=(n, 3)) * c[2] * spread for c in centres]
    parts.append(rng.uniform([0, 0, 3], [120, 120, 30], size=(clutter, 3)))
    return np.concatenate(parts)


def _random_codebook(rng, n_feat=40, n_entries=7):
    feats = np.column_stack([rng.uniform(0, 100, n_feat), rng.uniform(0, 100, n_feat),
                             rng.uniform(1, 5, n_feat)])
    counts = rng.integers(0, 4, n_feat)
    match_ptr = np.concatenate([[0], np.cumsum(counts)])
    match_entry = rng.integers(0, n_entries, match_ptr[-1])
    match_weight = rng.uniform(0.1, 1, match_ptr[-1])
    occ_counts = rng.integers(0, 5, n_entries)
    occ_ptr = np.concatenate([[0], np.cumsum(occ_counts)])
    occ = np.column_stack([rng.normal(size=occ_ptr[-1]), rng.normal(size=occ_ptr[-1]),
                           rng.uniform(0.5, 3, occ_ptr[-1])])
    occ_weight = rng.uniform(0.1, 1, occ_ptr[-1])
    return feats, match_ptr, match_entry, match_weight, occ_ptr, occ, occ_weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_votes_matches_reference(rng, dtype):
    args = _random_codebook(rng)
    feats = args[0].astype(dtype)
    votes, weights, vf, vo = accumulate_votes(feats, *args[1:])
    rv, rw, rf, ro = ref.accumulate_votes(feats.astype(np.float64), *args[1:])
    assert votes.dtype == dtype and votes.shape == rv.shape
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(votes, rv, rtol=tol, atol=tol)
    np.testing.assert_allclose(weights, rw, rtol=tol)
    np.testing.assert_array_equal(vf, rf)
    np.testing.assert_array_equal(vo, ro)


def test_accumulate_votes_empty_and_bad_input():
    votes, weights, vf, vo = accumulate_votes(np.zeros((0, 3)), [0], [], [], [0], np.zeros((0, 3)), [])
    assert votes.shape == (0, 3) and weights.shape == (0,)
    feats = np.ones((1, 3))
    with pytest.raises(ValueError, match="match_entry"):
        accumulate_votes(feats, [0, 1], [3], [1.0], [0, 1], np.ones((1, 3)), [1.0])
    with pytest.raises(ValueError, match="match_ptr"):
        accumulate_votes(feats, [0, 2], [0], [1.0], [0, 1], np.ones((1, 3)), [1.0])
    with pytest.raises(ValueError, match="features"):
        accumulate_votes(np.ones((1, 2)), [0, 1], [0], [1.0], [0, 1], np.ones((1, 3)), [1.0])
    with pytest.raises(ValueError, match="finite"):
        accumulate_votes(np.full((1, 3), np.nan), [0, 1], [0], [1.0], [0, 1], np.ones((1, 3)), [1.0])


@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("kernel", ["flat", "epanechnikov"])
def test_mean_shift_matches_brute_force(rng, adaptive, kernel):
    votes = _clusters(rng, [[20, 30, 10], [80, 40, 20], [50, 90, 5], [55, 92, 12]])
    weights = rng.uniform(0.1, 1, len(votes))
    bxy, bs = (0.25, 0.3) if adaptive else (3.0, 2.0)
    modes, scores, counts = mean_shift(votes, weights, bandwidth_xy=bxy, bandwidth_scale=bs,
                                       adaptive=adaptive, kernel=kernel)
    rmodes, rscores = ref.mean_shift(votes, weights, votes, bxy, bs, adaptive, kernel)
    assert modes.shape == rmodes.shape
    np.testing.assert_allclose(modes, rmodes, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scores, rscores, rtol=1e-9)
    assert counts.sum() == len(votes) and np.all(np.diff(scores) <= 0)
    # The four planted objects are the four strongest modes.
    top = modes[:4]
    for c in [[20, 30, 10], [80, 40, 20], [50, 90, 5], [55, 92, 12]]:
        assert np.min(np.abs(top - c).max(1) / c[2]) < 0.1


def test_mean_shift_adaptive_separates_small_objects_fixed_does_not(rng):
    # Two small objects 8 px apart and one large object: a fixed window big enough for the
    # large object's spread merges the small ones; the balloon window keeps them apart.
    votes = _clusters(rng, [[20, 20, 4], [28, 20, 4], [80, 80, 40]], n=80, clutter=0, spread=0.05)
    am, _, _ = mean_shift(votes, bandwidth_xy=0.4, bandwidth_scale=0.4)
    fm, _, _ = mean_shift(votes, bandwidth_xy=16, bandwidth_scale=16, adaptive=False)
    assert len(am) == 3
    assert len(fm) == 2


def test_mean_shift_equals_sklearn_meanshift(rng):
    sk = pytest.importorskip("sklearn.cluster", reason="peer: scikit-learn MeanShift")
    votes = _clusters(rng, [[20, 30, 10], [80, 40, 12], [50, 90, 8]], clutter=20)
    bw = 6.0
    modes, _, _ = mean_shift(votes, bandwidth_xy=bw, bandwidth_scale=bw, adaptive=False)
    peer = sk.MeanShift(bandwidth=bw, seeds=votes).fit(votes).cluster_centers_
    assert modes.shape == peer.shape
    key = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_allclose(key(modes), key(peer), atol=1e-6)


def test_mean_shift_float32_and_seeds(rng):
    votes = _clusters(rng, [[20, 30, 10], [80, 40, 20]], clutter=0)
    m64, s64, _ = mean_shift(votes, bandwidth_xy=0.25, bandwidth_scale=0.3)
    m32, s32, _ = mean_shift(votes.astype(np.float32), bandwidth_xy=0.25, bandwidth_scale=0.3)
    assert m32.dtype == np.float32
    np.testing.assert_allclose(m32, m64, rtol=1e-4)
    seeds = bin_seeds(votes, bandwidth_xy=0.25, bandwidth_scale=0.3)
    assert 2 <= len(seeds) < len(votes)
    mb, _, _ = mean_shift(votes, seeds=seeds, bandwidth_xy=0.25, bandwidth_scale=0.3)
    np.testing.assert_allclose(mb, m64, atol=1e-6)


def test_mean_shift_empty_one_and_bad_input():
    m, s, c = mean_shift(np.zeros((0, 3)))
    assert m.shape == (0, 3) and s.shape == (0,)
    m, s, c = mean_shift([[5.0, 6.0, 2.0]], [0.5])
    np.testing.assert_allclose(m, [[5, 6, 2]])
    np.testing.assert_allclose(s, [0.5])
    # A seed whose window holds no vote gives no mode.
    m, _, _ = mean_shift([[5.0, 6.0, 2.0]], seeds=[[500.0, 6.0, 2.0]])
    assert len(m) == 0
    with pytest.raises(ValueError, match="votes"):
        mean_shift(np.ones((4, 2)))
    with pytest.raises(ValueError, match="weights"):
        mean_shift(np.ones((4, 3)), np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        mean_shift(np.ones((2, 3)), [1.0, -1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_shift([[np.nan, 1, 1]])
    with pytest.raises(ValueError, match="scale"):
        mean_shift([[1, 1, 0.0]])
    with pytest.raises(ValueError, match="bandwidth_xy"):
        mean_shift(np.ones((2, 3)), bandwidth_xy=0)
    with pytest.raises(ValueError, match="kernel"):
        mean_shift(np.ones((2, 3)), kernel="gauss")


def test_mean_shift_and_votes_independent_of_thread_count(rng):
    import pydetect

    args = _random_codebook(rng, n_feat=400, n_entries=20)
    votes = _clusters(rng, [[20, 30, 10], [80, 40, 20], [50, 90, 5]], n=300, clutter=200)
    before = pydetect.get_num_threads()
    try:
        out = []
        for n in (1, 2, 3):
            pydetect.set_num_threads(n)
            out.append((accumulate_votes(*args), mean_shift(votes, bandwidth_xy=0.25, bandwidth_scale=0.3)))
    finally:
        pydetect.set_num_threads(before)
    for (v, m) in out[1:]:
        for a, b in zip(v + m, out[0][0] + out[0][1]):
            np.testing.assert_array_equal(a, b)
