"""HaarFeatures: enumeration (OpenCV / scikit-image orders), values, normalisation, errors."""

import numpy as np
import pytest

import _reference_training as ref
from pydetect import _C
from pydetect.cascade.haar_features import HaarFeatures, SKIMAGE_FEATURE_TYPES


def _bank_as_list(bank):
    out = []
    for i in range(len(bank)):
        d = bank.to_opencv(i)
        out.append((d["tilted"], [tuple(r[:4]) + (int(r[4]),) for r in d["rects"]]))
    return out


@pytest.mark.parametrize("mode", ["basic", "core", "all"])
@pytest.mark.parametrize("window", [(5, 4), (6, 7)])
def test_opencv_enumeration_matches_transcribed_generator(mode, window):
    bank = HaarFeatures(window, mode=mode)
    h, w = window
    assert _bank_as_list(bank) == ref.opencv_features(w, h, mode)


def test_opencv_counts_24x24():
    # opencv_traincascade logs 162,336 features (BASIC) and 261,600 (ALL) for 24x24.
    assert len(HaarFeatures((24, 24), "basic")) == 162336
    assert len(HaarFeatures((24, 24), "all")) == 261600
    core = HaarFeatures((24, 24), "core")
    assert 162336 < len(core) < 261600 and not core.tilted.any()


def test_skimage_order_and_rectangles():
    skf = pytest.importorskip("skimage.feature", reason="scikit-image is the peer for mode='skimage'")
    for t in SKIMAGE_FEATURE_TYPES:
        coords, _ = skf.haar_like_feature_coord(6, 5, t)  # width 6, height 5
        bank = HaarFeatures((5, 6), mode="skimage", feature_types=t)
        assert len(bank) == len(coords)
        for i, rects in enumerate(coords):
            # bounding box of skimage's rectangles = our first (whole) rectangle
            r0 = np.array([r[0] for r in rects]).min(0)
            r1 = np.array([r[1] for r in rects]).max(0)
            x, y, w, h = bank.rects[i, 0]
            assert (y, x, y + h - 1, x + w - 1) == (r0[0], r0[1], r1[0], r1[1])


@pytest.mark.parametrize("window", [(25, 25), (7, 11)])
def test_skimage_values_equal(window, rng):
    skf = pytest.importorskip("skimage.feature", reason="scikit-image is the peer for mode='skimage'")
    integral_image = pytest.importorskip("skimage.transform").integral_image
    h, w = window
    windows = rng.integers(0, 256, size=(3, h, w), dtype=np.uint8)
    windows[2] = 255  # bright window: the largest sums
    bank = HaarFeatures(window, mode="skimage")
    ours = bank.compute(windows, normalize=False)
    for k in range(len(windows)):
        expected = skf.haar_like_feature(integral_image(windows[k]), 0, 0, w, h)
        np.testing.assert_array_equal(ours[k], expected.astype(np.float32))


def test_skimage_feature_type_subset(rng):
    skf = pytest.importorskip("skimage.feature", reason="scikit-image is the peer for mode='skimage'")
    integral_image = pytest.importorskip("skimage.transform").integral_image
    win = rng.integers(0, 256, size=(9, 8), dtype=np.uint8)
    types = ["type-4", "type-2-y"]  # enumerated in the order given, as skimage does
    bank = HaarFeatures((9, 8), mode="skimage", feature_types=types)
    expected = skf.haar_like_feature(integral_image(win), 0, 0, 8, 9, feature_type=types)
    np.testing.assert_array_equal(bank.compute(win, normalize=False)[0], expected)


@pytest.mark.parametrize("mode", ["basic", "core", "all"])
def test_raw_values_match_brute_force(mode, rng):
    h, w = 7, 8
    windows = rng.integers(0, 256, size=(2, h, w), dtype=np.uint8)
    bank = HaarFeatures((h, w), mode=mode)
    ours = bank.compute(windows, normalize=False)
    feats = ref.opencv_features(w, h, mode)
    # every tilted feature and a spread of upright ones
    pick = [i for i, f in enumerate(feats) if f[0]] + list(range(0, len(feats), 7))
    for i in pick:
        tilted, rects = feats[i]
        for k in range(2):
            assert ours[k, i] == pytest.approx(ref.feature_value(windows[k], tilted, rects), abs=1e-3)


def test_normalized_values(rng):
    h, w = 6, 9
    windows = rng.integers(0, 256, size=(4, h, w), dtype=np.uint8)
    windows[3] = 77  # flat window: factor 0 -> values 0
    bank = HaarFeatures((h, w), mode="all")
    raw = bank.compute(windows, normalize=False)
    norm = bank.compute(windows)
    for k in range(3):
        # the detector's arithmetic: float32 raw value times float32(1 / sqrt(A*sq - s^2))
        np.testing.assert_array_equal(norm[k], raw[k] * ref.vnf(windows[k]))
    assert not norm[3].any()
    # invariant to an affine change of grey levels (the point of the normalisation): the
    # weighted areas of every feature sum to 0, so an offset cancels and a gain divides out
    small = windows[:3] // 4  # 2 * small + 10 stays below 256
    np.testing.assert_allclose(bank.compute((small * 2 + 10).astype(np.uint8)), bank.compute(small),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["all", "skimage"])
def test_normalized_values_are_what_the_detector_compares(rng, mode):
    # One stage, one stump on feature f with its threshold at f's training value c on a
    # window: the detector (scale 1, the image is the window) goes right (value >= c) and
    # accepts, and rejects with the threshold one float above c. So the detector's value
    # on that window is exactly c.
    from pydetect.cascade import Cascade, CascadeDetector
    from pydetect.cascade.model import HaarFeature, Stage, WeakTree

    h, w = 7, 10
    bank = HaarFeatures((h, w), mode=mode)
    win = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
    values = bank.compute(win)[0]
    tilted_idx = [i for i in range(len(bank)) if bank.tilted[i]]
    pick = sorted(set(rng.choice(len(bank), 25, replace=False).tolist() + tilted_idx[::40]))

    def accepts(feature, threshold):
        tree = WeakTree(np.array([0]), np.array([-1]), np.array([0]),
                        np.array([threshold], np.float32), np.zeros((0, 8), np.int32),
                        np.array([-1.0, 1.0], np.float32))
        cascade = Cascade.from_lists("HAAR", (w, h), [Stage(0.0, [tree])], [feature])
        det = CascadeDetector(cascade).detect(win, min_neighbors=0, min_size=(w, h),
                                              max_size=(w, h))
        return len(det) == 1

    for i in pick:
        d = bank.to_opencv(i)
        r = np.asarray(d["rects"])
        feature = HaarFeature(r[:, :4].astype(np.int32), r[:, 4].astype(np.float32),
                              bool(d["tilted"]))
        c = np.float32(values[i])
        assert accepts(feature, c), (i, c)
        assert not accepts(feature, np.nextafter(c, np.float32(np.inf))), (i, c)


def test_subset_chunks_and_torch(rng):
    windows = rng.integers(0, 256, size=(5, 10, 10), dtype=np.uint8)
    bank = HaarFeatures((10, 10), mode="core")
    full = bank.compute(windows)
    idx = np.array([7, 3, len(bank) - 1])
    np.testing.assert_array_equal(bank.compute(windows, features=idx), full[:, idx])
    np.testing.assert_array_equal(bank.subset(idx).compute(windows), full[:, idx])
    chunks = list(bank.iter_compute(windows, chunk_bytes=2 * len(bank) * 4))
    assert [s for s, _ in chunks] == [0, 2, 4]
    np.testing.assert_array_equal(np.concatenate([v for _, v in chunks]), full)
    # non-contiguous input, a single (h, w) window
    big = np.zeros((5, 20, 10), np.uint8)
    big[:, ::2] = windows
    np.testing.assert_array_equal(bank.compute(big[:, ::2]), full)
    np.testing.assert_array_equal(bank.compute(windows[2]), full[2:3])
    torch = pytest.importorskip("torch")
    out = bank.compute(torch.from_numpy(windows))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), full)


def test_thread_count_does_not_change_values(rng):
    import pydetect

    # 37 windows and > 1024 features: several window batches and feature blocks per thread
    windows = rng.integers(0, 256, size=(37, 12, 12), dtype=np.uint8)
    bank = HaarFeatures((12, 12), mode="all")
    before = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        one = bank.compute(windows)
        pydetect.set_num_threads(3)
        three = bank.compute(windows)
    finally:
        pydetect.set_num_threads(before)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(one, np.concatenate([bank.compute(w[None]) for w in windows]))


def test_empty_and_one_window():
    bank = HaarFeatures((4, 4), mode="basic")
    assert bank.compute(np.zeros((0, 4, 4), np.uint8)).shape == (0, len(bank))
    assert bank.compute(np.full((1, 4, 4), 9, np.uint8), normalize=False).shape == (1, len(bank))


def test_to_opencv_representation():
    bank = HaarFeatures((24, 24), mode="all")
    first = bank.to_opencv(0)
    assert first == {"rects": [(0, 0, 2, 1, -1.0), (1, 0, 1, 1, 2.0)], "tilted": False}
    tilted = bank.to_opencv(int(np.flatnonzero(bank.tilted)[0]))
    assert tilted["tilted"] and len(tilted["rects"]) == 2
    assert bank.type_names([0, 1]) == ["haar_x2", "haar_y2"]


def test_bad_input():
    bank = HaarFeatures((8, 8))
    with pytest.raises(TypeError, match="uint8"):
        bank.compute(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 8, 8\)"):
        bank.compute(np.zeros((2, 8, 9), np.uint8))
    with pytest.raises(ValueError, match="mode"):
        HaarFeatures((8, 8), mode="fancy")
    with pytest.raises(ValueError, match="feature_types"):
        HaarFeatures((8, 8), mode="skimage", feature_types=["type-5"])
    with pytest.raises(ValueError, match="feature_types"):
        HaarFeatures((8, 8), mode="basic", feature_types=["type-4"])
    with pytest.raises(ValueError, match="window height"):
        HaarFeatures((0, 8))
    with pytest.raises(TypeError, match="window"):
        HaarFeatures("24x24")
    with pytest.raises(ValueError, match="max_bytes"):
        bank.compute(np.zeros((100, 8, 8), np.uint8), max_bytes=1000)
    with pytest.raises(ValueError, match="feature indices"):
        bank.compute(np.zeros((1, 8, 8), np.uint8), features=[len(bank)])
    with pytest.raises(ValueError, match="3x3"):
        HaarFeatures((2, 8)).compute(np.zeros((1, 2, 8), np.uint8))
    # the kernel refuses rectangles outside the window
    r = bank.rects[:1].copy()
    r[0, 0, 0] = 7
    with pytest.raises(ValueError, match="leaves the 8x8 window"):
        _C.haar_compute(np.zeros((1, 8, 8), np.uint8), r, bank.weights[:1], bank.tilted[:1].view(np.uint8), False)
