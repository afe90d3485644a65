"""The cascade's builders (empty, append_stage, first_stages, to_arrays), the flat-window rule
and the scan's position count, each against an independent reference."""

import numpy as np
import pytest

from pydetect.cascade import AdaBoost, Cascade, CascadeDetector, HaarFeatures, flat_windows, pyramid_levels

WIN = (12, 10)  # (width, height)


def _windows(n, seed=0, low=0, high=256):
    w, h = WIN
    return np.random.default_rng(seed).integers(low, high, size=(n, h, w)).astype(np.uint8)


def _random_cascade(num_stages=4, seed=0):
    """Stages boosted on random windows over random subsets of a Haar bank, appended one by one."""
    rng = np.random.default_rng(seed)
    bank = HaarFeatures((WIN[1], WIN[0]), mode="all")
    pos, neg = _windows(60, seed + 1, 80, 200), _windows(60, seed + 2)
    cascade = Cascade.empty("HAAR", WIN, max_depth=2)
    for _ in range(num_stages):
        cols = np.sort(rng.choice(len(bank), size=300, replace=False))
        X = bank.compute(np.concatenate([pos, neg]), features=cols)
        booster = AdaBoost(3, max_depth=2).fit(X, np.r_[np.ones(60), -np.ones(60)])
        cascade = cascade.append_stage(np.float32(-0.5), booster.trees_, bank.rects[cols], bank.weights[cols],
                                       bank.tilted[cols])
    return cascade


def _reference_flat(windows):
    """OpenCV's rule in float64: over the window less a 1-pixel border, with area A, sum S and
    squared sum Q, the window is flat unless A Q - S^2 > 0 and A / sqrt(A Q - S^2) < 0.1 (the
    latter computed as a float32 reciprocal, as the detector does)."""
    inner = windows[:, 1:-1, 1:-1].astype(np.int64).reshape(len(windows), -1)
    area = float(inner.shape[1])
    s, q = inner.sum(1).astype(np.float64), (inner ** 2).sum(1).astype(np.float64)
    v = area * q - s * s
    vnf = np.divide(1.0, np.sqrt(np.maximum(v, 0.0)), out=np.zeros_like(v), where=v > 0).astype(np.float32)
    return ~((vnf != 0) & (area * vnf.astype(np.float64) < 0.1))


def test_flat_windows_match_the_formula_and_the_scan():
    # contrasts from constant to strong, with many windows near the deviation of 10
    w, h = WIN
    rng = np.random.default_rng(3)
    base = rng.integers(100, 140, size=(400, 1, 1))
    spread = rng.uniform(0, 45, size=(400, 1, 1))
    windows = np.clip(np.rint(base + spread * rng.standard_normal((400, h, w))), 0, 255).astype(np.uint8)
    windows[:5] = 77  # constant
    flat = flat_windows(windows)
    np.testing.assert_array_equal(flat, _reference_flat(windows))
    assert flat.any() and (~flat).any()
    # a cascade without stages accepts exactly the windows that are not flat
    np.testing.assert_array_equal(Cascade.empty("HAAR", WIN).accepts(windows), ~flat)


def test_flat_windows_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        flat_windows(np.zeros((2, 10, 12), np.float32))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        flat_windows(np.zeros((10, 12), np.uint8))


def test_append_stage_equals_from_lists_and_reuses_features():
    cascade = _random_cascade()
    assert cascade.num_stages == 4 and cascade.max_depth == 2
    # the same cascade from its stage objects
    again = Cascade.from_lists("HAAR", WIN, cascade.stages, cascade.features)
    for name, value in cascade.to_arrays().items():
        if name != "max_depth":
            np.testing.assert_array_equal(getattr(again, name), value, err_msg=name)
    # features are unique (a feature used by two stages is stored once) and all used
    keys = {(r.tobytes(), w.tobytes(), bool(t)) for r, w, t in zip(cascade.rects, cascade.weights, cascade.tilted)}
    assert len(keys) == cascade.num_features
    assert set(np.unique(cascade.node_feature)) == set(range(cascade.num_features))
    # a stage over features the cascade holds adds none
    stage = cascade.stages[1]
    same = cascade.append_stage(stage.threshold, stage.weak, cascade.rects, cascade.weights, cascade.tilted)
    assert same.num_features == cascade.num_features and same.num_stages == 5


def test_first_stages_is_the_cascade_built_so_far():
    """Cut to k stages, a cascade equals the one its builder had after k stages."""
    cascade = _random_cascade(seed=4)
    built = Cascade.empty("HAAR", WIN, max_depth=2)
    windows = _windows(300, 9, 40, 220)
    for k, stage in enumerate(cascade.stages, start=1):
        built = built.append_stage(stage.threshold, stage.weak, cascade.rects, cascade.weights, cascade.tilted)
        cut = cascade.first_stages(k)
        for name, value in built.to_arrays().items():
            np.testing.assert_array_equal(getattr(cut, name), value, err_msg=f"{name} after {k} stages")
        np.testing.assert_array_equal(cut.accepts(windows), built.accepts(windows))
    assert cascade.first_stages(0).num_stages == 0
    with pytest.raises(ValueError, match="num_stages"):
        cascade.first_stages(5)


def test_to_arrays_round_trip_and_builder_errors():
    cascade = _random_cascade(num_stages=2, seed=6)
    copy = Cascade(**cascade.to_arrays())
    windows = _windows(200, 2, 30, 230)
    np.testing.assert_array_equal(copy.accepts(windows), cascade.accepts(windows))
    tree = cascade.stages[0].weak[0]
    with pytest.raises(ValueError, match="outside the 0 given features"):
        cascade.append_stage(0.0, [tree], np.zeros((0, 3, 4), np.int32))
    with pytest.raises(ValueError, match="at least one tree"):
        cascade.append_stage(0.0, [], cascade.rects, cascade.weights, cascade.tilted)
    with pytest.raises(ValueError, match="same"):
        cascade.append_stage(0.0, [tree], cascade.rects, cascade.weights[:1], cascade.tilted)


def test_scan_counts_the_positions_it_visits():
    """A cascade without stages accepts every position of a noise image (no window is flat), so
    the scan's position count must equal its accepted windows; any cascade visits the same
    positions."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(61, 83)).astype(np.uint8)
    empty = CascadeDetector(Cascade.empty("HAAR", WIN))
    for scale_factor in (1.1, 1.25, 1.5):
        windows, boxes, scanned = empty.accepted_windows(img, scale_factor, return_scanned=True)
        assert scanned == len(windows) == len(boxes) > 0
        _, levels = pyramid_levels(img, WIN, scale_factor)
        # each level contributes at most its positions at step 1 (the scan steps 2 below scale 2)
        assert scanned <= sum((lv.shape[0] - WIN[1] + 1) * (lv.shape[1] - WIN[0] + 1) for lv in levels)
        other = CascadeDetector(_random_cascade(num_stages=2))
        assert other.accepted_windows(img, scale_factor, return_scanned=True)[2] == scanned


def test_an_lbp_cascade_rebuilt_stage_by_stage_detects_the_same():
    """append_stage takes LBP trees (category subsets) too: OpenCV's LBP face cascade (as
    scikit-image ships it), rebuilt stage by stage, finds the same raw windows."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the LBP cascade")
    original = Cascade.load(skdata.lbp_frontal_face_cascade_filename())
    built = Cascade.empty("LBP", original.window_size)
    for stage in original.stages:
        built = built.append_stage(stage.threshold, stage.weak, original.rects)
    assert built.num_stages == original.num_stages and built.num_features <= original.num_features
    image = (skdata.astronaut()[::2, ::2].mean(axis=2)).astype(np.uint8)
    want = CascadeDetector(original).detect(image, 1.2, 0).boxes
    got = CascadeDetector(built).detect(image, 1.2, 0).boxes
    assert len(want) > 0
    np.testing.assert_array_equal(got, want)
