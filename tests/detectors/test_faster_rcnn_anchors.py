"""FasterRCNN(anchors=...): k-means anchor shapes, explicit shapes, persistence, checks;
AnchorGenerator(shapes=...)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect import models  # noqa: E402
from pydetect.data import digits_in_clutter  # noqa: E402
from pydetect.detectors import FasterRCNN  # noqa: E402
from pydetect.models.anchors import fit_anchors  # noqa: E402
from pydetect.models.backbones import build_backbone  # noqa: E402
from pydetect.models import kmeans_anchors  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_detector(**kw):
    params = dict(pretrain=None, max_iter=2, train_seconds=30, batch_size=1, progress=False, seed=0,
                  rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))
    params.update(kw)
    return FasterRCNN(**params)


@pytest.fixture(scope="module")
def tiny_data():
    return digits_in_clutter("train", n_images=6)


def train_wh(dataset):
    b = np.concatenate([np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in dataset.targets])
    return b[:, 2:] - b[:, :2]


def cell_wh(gen, level=0):
    cell = gen.cell_anchors(level).numpy().astype(np.float64)
    np.testing.assert_allclose(cell[:, :2], -cell[:, 2:], atol=1e-5)  # centred at 0
    return cell[:, 2:] - cell[:, :2]


@pytest.fixture(scope="module")
def kmeans_fitted(tiny_data):
    return tiny_detector(anchors="kmeans", seed=3).fit(tiny_data)


# ----------------------------------------------------------------------------- AnchorGenerator
def test_anchor_generator_shapes():
    shapes = [(10.0, 20.0), (30.0, 15.0), (8.0, 8.0)]
    gen = models.AnchorGenerator(shapes=[shapes])
    assert gen.num_anchors_per_location() == [3] and gen.sizes is None and gen.aspect_ratios is None
    np.testing.assert_allclose(cell_wh(gen), shapes, rtol=1e-6)
    anchors = gen.grid_anchors([(2, 3)], [(8.0, 8.0)])
    assert anchors.shape == (2 * 3 * 3, 4)
    np.testing.assert_allclose(anchors[0].numpy(), [4 - 5, 4 - 10, 4 + 5, 4 + 10])  # cell (0, 0), first shape
    two = models.AnchorGenerator(shapes=[shapes[:1], shapes[1:]])
    assert two.num_anchors_per_location() == [1, 2] and two.num_levels == 2
    with pytest.raises(ValueError, match="2 feature maps for 1 anchor levels"):
        gen.grid_anchors([(2, 2), (1, 1)], [(8.0, 8.0), (16.0, 16.0)])


def test_anchor_generator_shapes_equal_sizes_and_ratios():
    """The same (w, h) given as shapes gives the same anchors as sizes x ratios."""
    sizes, ratios = (16.0, 32.0), (0.5, 1.0, 2.0)
    gen = models.AnchorGenerator((sizes,), (ratios,))
    wh = [(s / np.sqrt(r), s * np.sqrt(r)) for r in ratios for s in sizes]  # ratio-major
    same = models.AnchorGenerator(shapes=[wh])
    np.testing.assert_allclose(same.grid_anchors([(3, 4)], [(8.0, 8.0)]).numpy(),
                               gen.grid_anchors([(3, 4)], [(8.0, 8.0)]).numpy(), rtol=1e-6, atol=1e-5)
    default = models.AnchorGenerator()
    assert default.sizes == ((32.0, 64.0, 128.0),) and default.aspect_ratios == ((0.5, 1.0, 2.0),)


def test_anchor_generator_bad_shapes():
    with pytest.raises(ValueError, match="not both"):
        models.AnchorGenerator(((16,),), shapes=[[(1.0, 2.0)]])
    with pytest.raises(ValueError, match="positive"):
        models.AnchorGenerator(shapes=[[(1.0, 0.0)]])
    with pytest.raises(ValueError, match="positive"):
        models.AnchorGenerator(shapes=[[(1.0, float("nan"))]])
    with pytest.raises(ValueError, match="empty"):
        models.AnchorGenerator(shapes=[[]])
    with pytest.raises(ValueError, match="pairs"):
        models.AnchorGenerator(shapes=[[(1.0, 2.0, 3.0)]])


# ----------------------------------------------------------------------------- FasterRCNN
def test_kmeans_anchors_fitted_on_training_boxes(kmeans_fitted, tiny_data):
    det = kmeans_fitted
    sizes, ratios = fit_anchors(tiny_data.targets, n_sizes=4)
    k = len(sizes) * len(ratios)
    want, _ = kmeans_anchors(train_wh(tiny_data), k, seed=3)
    assert len(det.anchor_shapes_) == k and det.anchor_sizes_ is None and det.aspect_ratios_ is None
    np.testing.assert_allclose(det.anchor_shapes_, want)
    gen = det.model_.rpn.anchor_generator
    assert gen.num_anchors_per_location() == [k]
    np.testing.assert_allclose(cell_wh(gen), want, rtol=1e-5)


def test_default_anchors_unchanged(tiny_data):
    det = tiny_detector()
    det._prepare(tiny_data.targets)
    assert det.anchor_shapes_ is None
    assert (det.anchor_sizes_, det.aspect_ratios_) == fit_anchors(tiny_data.targets, n_sizes=4)
    gen = det._build(build_backbone("vgg", False), 10).rpn.anchor_generator
    assert gen.shapes is None and gen.sizes == (det.anchor_sizes_,)


def test_explicit_shapes_used_as_given(tiny_data):
    shapes = [[20.0, 30.0], [12.0, 12.0], [40.0, 25.0]]
    det = tiny_detector(anchors=shapes, image_scale=1.5, max_iter=1).fit(tiny_data)
    assert det.anchor_shapes_ == tuple(tuple(s) for s in shapes)
    gen = det.model_.rpn.anchor_generator
    assert gen.num_anchors_per_location() == [3]
    np.testing.assert_allclose(cell_wh(gen), np.array(shapes) * 1.5, rtol=1e-6)  # the RPN sees resized images
    assert det.predict(tiny_data[0][0]).boxes.shape[1] == 4


def test_fpn_splits_area_sorted_shapes_over_levels(tiny_data):
    det = tiny_detector(backbone="resnet18", fpn=True, anchors="kmeans")
    det._prepare(tiny_data.targets)
    sizes, ratios = fit_anchors(tiny_data.targets, n_sizes=6)
    k = 6 * len(ratios)
    want, _ = kmeans_anchors(train_wh(tiny_data), k, seed=0)
    np.testing.assert_allclose(det.anchor_shapes_, want)
    gen = det._build(build_backbone("resnet18", True), 10).rpn.anchor_generator
    per = k // 3
    assert gen.num_anchors_per_location() == [per] * 3
    for level in range(3):
        np.testing.assert_allclose(cell_wh(gen, level), want[per * level:per * (level + 1)], rtol=1e-5)

    explicit = [[40.0, 40.0], [5.0, 5.0], [20.0, 10.0]]  # split by area, whatever the given order
    det = tiny_detector(backbone="resnet18", fpn=True, anchors=explicit)
    det._prepare(tiny_data.targets)
    gen = det._build(build_backbone("resnet18", True), 10).rpn.anchor_generator
    assert [cell_wh(gen, i).tolist() for i in range(3)] == [[[5.0, 5.0]], [[20.0, 10.0]], [[40.0, 40.0]]]


def test_save_load_round_trip(kmeans_fitted, tiny_data, tmp_path):
    path = tmp_path / "kmeans.pdm"
    kmeans_fitted.save(path)
    loaded = FasterRCNN.load(path)
    assert loaded.anchor_shapes_ == kmeans_fitted.anchor_shapes_ and loaded.anchors == "kmeans"
    for i in range(2):
        a, b = kmeans_fitted.predict(tiny_data[i][0]), loaded.predict(tiny_data[i][0])
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_model_without_anchor_shapes_still_loads(tiny_data):
    """A model fitted before ``anchors`` existed (state version 0) has neither ``anchors`` nor
    anchor_shapes_: the load-time upgrade reads them as None, and the anchors are rebuilt from
    anchor_sizes_ / aspect_ratios_."""
    det = tiny_detector(max_iter=1).fit(tiny_data)
    state = det._get_state()
    del state["anchor_shapes_"]
    params = {k: v for k, v in det.get_params(deep=False).items() if k != "anchors"}
    params, state = FasterRCNN._upgrade(params, state, 0)
    old = FasterRCNN(**params)
    old._set_state(state)
    assert old.anchor_shapes_ is None and old.get_params()["anchors"] is None
    a, b = det.predict(tiny_data[0][0]), old.predict(tiny_data[0][0])
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("anchors, match", [
    ("kmeans++", "anchors must be None, 'kmeans'"),
    ([[10.0, 0.0]], "anchors must hold positive"),
    ([[10.0, -3.0]], "anchors must hold positive"),
    ([[10.0, np.nan]], "anchors must be finite"),
    ([10.0, 20.0], r"anchors must be .*shape \(2,\)"),
    (np.zeros((0, 2)), r"anchors must be .*shape \(0, 2\)"),
    (np.ones((2, 3)), r"anchors must be .*shape \(2, 3\)"),
    (5, "anchors must be .*got 5"),
    ([["a", "b"]], "anchors must be"),
])
def test_bad_anchors(tiny_data, anchors, match):
    with pytest.raises(ValueError, match=match):
        tiny_detector(anchors=anchors).fit(tiny_data)


def test_anchor_conflicts(tiny_data):
    with pytest.raises(ValueError, match="leave anchor_sizes and aspect_ratios as None"):
        tiny_detector(anchors=[[10.0, 10.0]], anchor_sizes=(16.0,)).fit(tiny_data)
    with pytest.raises(ValueError, match="multiple of 3"):
        tiny_detector(backbone="resnet18", fpn=True, anchors=[[10.0, 10.0], [20.0, 20.0]]).fit(tiny_data)
    one = digits_in_clutter("train", n_images=1)
    with pytest.raises(ValueError, match="anchors='kmeans'.*distinct box shapes"):
        tiny_detector(anchors="kmeans", anchor_sizes=(10.0, 20.0, 30.0, 40.0, 50.0),
                      aspect_ratios=(0.5, 1.0, 2.0)).fit(one)
