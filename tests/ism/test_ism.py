"""ImplicitShapeModel: a real learning check on a synthetic shape class, persistence,
explanations, segmentation and bad input."""

import numpy as np
import pytest

from _ism_synthetic import ListDataset, cross_dataset, cross_image
from pydetect import Detections
from pydetect.detectors import ImplicitShapeModel, NotFittedError
from pydetect.ism import features as ft
from pydetect.ism.codebook import build_codebook, match
from pydetect.ops import box_iou


@pytest.fixture(scope="module")
def cross_model():
    train = cross_dataset(12, seed=0, scale_range=(30, 40))
    return ImplicitShapeModel().fit(train)


def _recall_at_k(model, dataset):
    hits = n = 0
    for image, target in dataset:
        gt = target["boxes"]
        dets = model.predict(image)[:len(gt)]  # as many detections as objects: no slack
        if len(dets):
            hits += int((box_iou(gt, dets.boxes).max(1) >= 0.5).sum())
        n += len(gt)
    return hits / n


def test_learns_cross_shape_at_new_positions_and_scales(cross_model):
    # Test objects at positions never seen and at scales 20% below / 30% above the training
    # range, among single-blob clutter that only the part configuration tells apart.
    test = cross_dataset(8, seed=1, scale_range=(24, 52), n_objects=2, n_clutter=6)
    assert _recall_at_k(cross_model, test) >= 0.9


def test_untrained_shape_is_not_found(cross_model):
    # A "plus" of four blobs in a line is made of the same parts but is not the class.
    rng = np.random.default_rng(5)
    canvas = 200 + rng.normal(0, 4, (128, 128))
    yy, xx = np.mgrid[0:128, 0:128]
    for x in (34, 50, 66, 82):
        canvas -= 120 * np.exp(-((xx - x) ** 2 + (yy - 64) ** 2) / (2 * 3.5**2))
    line = np.clip(canvas, 0, 255).astype(np.uint8)
    cross, target = cross_image(np.random.default_rng(6), n_clutter=0)
    best_line = cross_model.predict(line).scores.max(initial=0)
    best_cross = cross_model.predict(cross).scores.max(initial=0)
    assert best_cross > 2 * best_line


def test_detections_fields_and_explain(cross_model):
    image, target = cross_image(np.random.default_rng(3), n_clutter=2)
    dets = cross_model.predict(image)
    assert isinstance(dets, Detections) and len(dets) >= 1
    assert dets.boxes.dtype == np.float32 and np.all(np.diff(dets.scores) <= 0)
    assert dets.hypotheses.shape == (len(dets), 3)
    info = cross_model.explain(image, dets[0])
    # The supporting votes carry the whole score (flat kernel: score = vote mass).
    assert info["weights"].sum() == pytest.approx(float(dets.scores[0]), rel=1e-4)
    assert len(info["features"]) >= 2 and info["votes"].shape[1] == 3
    assert info["vote_feature"].max() < len(info["features"])
    # Supporting features lie on the object.
    cx, cy = info["features"][:, 0].mean(), info["features"][:, 1].mean()
    x1, y1, x2, y2 = target["boxes"][0]
    assert x1 <= cx <= x2 and y1 <= cy <= y2
    # Top-down segmentation: more figure inside the box than outside.
    fig = info["figure"]
    inside = np.zeros(fig.shape, bool)
    inside[int(y1):int(y2), int(x1):int(x2)] = True
    assert fig[inside].mean() > 0.5 > fig[~inside].mean()


def test_segment_masks(cross_model):
    image, target = cross_image(np.random.default_rng(4), n_clutter=0)
    model = ImplicitShapeModel(**{**cross_model.get_params(), "segment": True})
    model.__dict__.update({k: v for k, v in vars(cross_model).items() if k.endswith("_")})
    dets = model.predict(image)
    assert dets.masks.shape == (len(dets), *image.shape) and dets.masks.dtype == bool
    x1, y1, x2, y2 = target["boxes"][0].astype(int)
    m = dets.masks[0]
    box_mask = np.zeros_like(m)
    box_mask[y1:y2, x1:x2] = True
    assert (m & box_mask).sum() / (m | box_mask).sum() > 0.5


def test_save_load_gives_identical_detections(cross_model, tmp_path):
    path = tmp_path / "ism.pkl"
    cross_model.save(path)
    loaded = ImplicitShapeModel.load(path)
    for seed in (7, 8):
        image, _ = cross_image(np.random.default_rng(seed), n_objects=2)
        a, b = cross_model.predict(image), loaded.predict(image)
        assert len(a) == len(b)
        for name in ("boxes", "scores", "labels", "hypotheses"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("params", [dict(descriptor="sift"), dict(detector="harris-laplace"),
                                    dict(detector="dense", dense_scales=(3.0, 5.0))])
def test_options_learn_too(params):
    train = cross_dataset(8, seed=0, scale_range=(30, 40))
    model = ImplicitShapeModel(**params).fit(train)
    test = cross_dataset(4, seed=2, scale_range=(28, 44), n_objects=1)
    assert _recall_at_k(model, test) >= 0.75


def test_multiclass_and_class_name():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(8):
        image, target = cross_image(rng, n_clutter=0)
        items.append((image, target))
    ds = ListDataset(items, ["cross", "unused"])
    model = ImplicitShapeModel().fit(ds, class_name="cross")
    assert list(model.models_) == [0]
    assert model.predict(items[0][0]).labels.tolist()[:1] == [0]
    with pytest.raises(ValueError, match="class_name"):
        ImplicitShapeModel().fit(ds, class_name="dog")


def test_bad_input(cross_model):
    with pytest.raises(NotFittedError):
        ImplicitShapeModel().predict(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="image"):
        cross_model.predict(np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="image"):
        cross_model.predict(np.zeros((0, 32), np.uint8))
    with pytest.raises(ValueError, match="image"):
        cross_model.predict(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="detector"):
        ImplicitShapeModel(detector="harris").fit(cross_dataset(2, 0))
    with pytest.raises(ValueError, match="bandwidth_xy"):
        ImplicitShapeModel(bandwidth_xy=0).fit(cross_dataset(2, 0))
    with pytest.raises(TypeError, match="dataset"):
        ImplicitShapeModel().fit([(np.zeros((8, 8), np.uint8), {"boxes": [], "labels": []})])
    with pytest.raises(ValueError, match="empty"):
        ImplicitShapeModel().fit(ListDataset([], ["a"]))
    flat = ListDataset([(np.full((64, 64), 128, np.uint8),
                         {"boxes": np.array([[10, 10, 40, 40]], np.float32), "labels": np.array([0])})], ["a"])
    with pytest.raises(ValueError, match="no training object"):
        ImplicitShapeModel().fit(flat)
    image, _ = cross_image(np.random.default_rng(3))
    with pytest.raises(ValueError, match="detection"):
        cross_model.explain(image, Detections([[0, 0, 5, 5]]))


def test_patches_are_normalised_and_ngc_matches_correlation(rng):
    img = (rng.uniform(0, 255, (64, 64))).astype(np.uint8)
    pts = np.array([[20.0, 30.0, 3.0], [40.5, 22.0, 6.0], [5.0, 5.0, 2.0]])
    desc, contrast = ft.extract_patches(img, pts, patch_size=9, patch_factor=1.5)
    assert desc.shape == (3, 81) and np.all(contrast > 0)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(desc.mean(1), 0, atol=1e-6)
    # A pixel-aligned, unit-spacing patch equals the normalised raw crop (NGC = 1).
    p = np.array([[30.0, 30.0, 3.0]])  # half-size 4.5 -> 9 samples at pixel centres 26..34
    d, _ = ft.extract_patches(img, p, patch_size=9, patch_factor=1.5)
    crop = img[26:35, 26:35].astype(np.float64).ravel()
    crop = (crop - crop.mean()) / np.linalg.norm(crop - crop.mean())
    assert float(d[0] @ crop) == pytest.approx(1.0, abs=1e-5)


def test_codebook_average_link_cutoff(rng):
    # Three tight groups of patches: average-link at NGC 0.7 gives three entries whose
    # members all match their own entry.
    base = rng.normal(size=(3, 25))
    desc = np.concatenate([b + 0.15 * rng.normal(size=(20, 25)) for b in base])
    desc -= desc.mean(1, keepdims=True)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    centres, sizes = build_codebook(desc, threshold=0.7)
    assert len(centres) == 3 and sorted(sizes.tolist()) == [20, 20, 20]
    mp, me, mw = match(desc, centres, threshold=0.7, max_matches=1)
    assert np.all(np.diff(mp) == 1)
    assert len(set(me[:20])) == len(set(me[20:40])) == len(set(me[40:])) == 1
    # k-means fallback gives the same grouping.
    c2, s2 = build_codebook(desc, threshold=0.7, max_agglomerative=30)
    assert sorted(s2.tolist()) == [20, 20, 20]


def test_polarity_invariant_patches(rng):
    img = rng.uniform(0, 255, (48, 48)).astype(np.uint8)
    pts = np.array([[20.0, 24.0, 3.0], [30.0, 18.0, 2.0]])
    _, a = ft.describe(img, pts, polarity_invariant=True)
    _, b = ft.describe(255 - img, pts, polarity_invariant=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    _, c = ft.describe(img, pts)
    _, d = ft.describe(255 - img, pts)
    np.testing.assert_allclose(c, -d, atol=1e-5)


def test_box_figure_ground_hand_worked():
    # Patch of half-size 2.5 * 2 = 5 around (10, 10) sampled 4x4 at offsets -3.75, -1.25,
    # 1.25, 3.75: the box [10, 0, 20, 20] covers the two right columns.
    fg = ft.box_figure_ground([[10.0, 10.0, 2.0]], [10, 0, 20, 20], size=4)
    expected = np.zeros((4, 4), np.uint8)
    expected[:, 2:] = 1
    np.testing.assert_array_equal(fg[0], expected)


def test_harris_laplace_finds_the_corners_of_a_square():
    img = np.zeros((80, 80), np.uint8)
    img[20:60, 25:55] = 255
    pts = ft.harris_laplace(img)
    corners = np.array([[25, 20], [55, 20], [25, 60], [55, 60]], np.float64)
    d = np.linalg.norm(pts[:, None, :2] - corners[None], axis=2)
    # Every point is a corner response (within 1.5 of its scale: corners drift inwards at
    # coarse scales) and every corner is found.
    assert len(pts) >= 4
    assert np.all(d.min(1) <= 1.5 * pts[:, 2])
    assert set(d.argmin(1).tolist()) == {0, 1, 2, 3}
    # A flat image has no interest point.
    assert len(ft.harris_laplace(np.full((40, 40), 90, np.uint8))) == 0
