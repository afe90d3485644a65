"""FasterRCNN's torchvision resize policy, torchvision's anchor grid, compat="torchvision" (its network,
whole-detector weights for fine-tuning) and their parameter checks. No torchvision needed: the
references are brute-force formulas and torch's own interpolation (tests/models/
test_torchvision_faster_rcnn.py compares with torchvision itself)."""

import itertools

import numpy as np
import pytest
import torch

from pydetect import data, engine, models
from pydetect.detectors import FasterRCNN
from pydetect.models.generalized_rcnn import resized_size
from pydetect.models.torchvision_compat import TORCHVISION_DEFAULTS, build_torchvision_faster_rcnn

FAST = dict(pretrain=None, max_iter=2, train_seconds=120, batch_size=1, progress=False, num_threads=1,
            rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))


@pytest.fixture(scope="module")
def train():
    return data.digits_in_clutter("train", n_images=3, seed=0)


@pytest.mark.parametrize("h, w, min_size, max_size", [
    (480, 640, 800, 1333), (640, 480, 800, 1333), (97, 150, 320, 512), (300, 200, 320, 512),
    (1080, 1920, 800, 1333), (333, 1000, 600, 1000), (7, 3, 5, None), (480, 640, 479, 2000)])
def test_resized_size_is_what_interpolate_with_a_scale_factor_gives(h, w, min_size, max_size):
    factor = min_size / min(h, w) if max_size is None else min(min_size / min(h, w), max_size / max(h, w))
    ref = torch.nn.functional.interpolate(torch.zeros(1, 1, h, w), scale_factor=factor, mode="bilinear",
                                          recompute_scale_factor=True, align_corners=False)
    assert resized_size(h, w, min_size=min_size, max_size=max_size) == tuple(ref.shape[-2:])


def _grid_reference(sizes, ratios, feature_shapes, image_shape):
    """torchvision's anchors by brute force: float32 origin-centred anchors rounded half to even,
    shifted to (x * stride, y * stride) with integer strides."""
    out = []
    for level_sizes, (fh, fw) in zip(sizes, feature_shapes):
        sy, sx = image_shape[0] // fh, image_shape[1] // fw
        cell = []
        for r in ratios:  # ratio-major, then size
            for s in level_sizes:
                hr = np.sqrt(np.float32(r))
                ws, hs = np.float32(1) / hr * np.float32(s), hr * np.float32(s)
                cell.append(np.round(np.array([-ws, -hs, ws, hs], np.float32) / np.float32(2)))
        for y, x in itertools.product(range(fh), range(fw)):
            for c in cell:
                out.append(c + np.array([x * sx, y * sy, x * sx, y * sy], np.float32))
    return np.array(out, np.float32)


def test_torchvision_grid_anchors_match_the_brute_force_rule():
    sizes, ratios = ((32.0, 45.0), (64.0, 90.0), (128.0, 181.0)), (0.5, 1.0, 2.0)
    gen = models.AnchorGenerator(sizes, (ratios,), torchvision_grid=True)
    image_shape = (224, 288)
    feats = [torch.zeros(1, 1, 28, 36), torch.zeros(1, 1, 14, 18), torch.zeros(1, 1, 7, 9)]
    got = gen(image_shape, feats).numpy()
    np.testing.assert_array_equal(got, _grid_reference(sizes, ratios, [(28, 36), (14, 18), (7, 9)], image_shape))
    # An odd pooled level: torchvision's stride is the integer quotient (224 // 4 = 56, not 64).
    gen1 = models.AnchorGenerator(((512.0,),), (ratios,), torchvision_grid=True)
    got = gen1(image_shape, [torch.zeros(1, 1, 4, 5)]).numpy()
    np.testing.assert_array_equal(got, _grid_reference(((512.0,),), ratios, [(4, 5)], image_shape))
    # pydetect's own grid is unchanged: centred cells, unrounded.
    own = models.AnchorGenerator(((33.0,),), ((1.0,),))(image_shape, [torch.zeros(1, 1, 28, 36)]).numpy()
    np.testing.assert_allclose(own[0], [8 * 0.5 - 16.5, 8 * 0.5 - 16.5, 8 * 0.5 + 16.5, 8 * 0.5 + 16.5])


def _tiny_compat_network(num_classes, min_size=(64,), max_size=96):
    torch.manual_seed(3)
    settings = dict(TORCHVISION_DEFAULTS, min_size=min_size, max_size=max_size, representation_size=32,
                    rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(30, 30))
    return build_torchvision_faster_rcnn(models.build_backbone("resnet18_fpn"), num_classes, **settings)


def test_resize_policy_maps_detections_back_and_training_draws_each_min_size():
    net = _tiny_compat_network(2, min_size=(48, 64), max_size=96).eval()
    images = [torch.rand(3, 50, 70), torch.rand(3, 120, 40)]
    (x, sizes), _, _, originals = net.preprocess(images)
    assert sizes == [resized_size(50, 70, min_size=64, max_size=96), resized_size(120, 40, min_size=64, max_size=96)]
    assert originals == [(50, 70), (120, 40)]
    # Targets scale by new / old; detections come back by old / new.
    boxes = torch.tensor([[10.0, 5.0, 60.0, 45.0]])
    _, targets, _, _ = net.preprocess(images[:1], [{"boxes": boxes, "labels": torch.tensor([0])}])
    (h, w) = sizes[0]
    torch.testing.assert_close(targets[0]["boxes"], boxes * torch.tensor([w / 70, h / 50, w / 70, h / 50]))
    back = net.postprocess([{"boxes": targets[0]["boxes"]}], sizes[:1], originals[:1])
    torch.testing.assert_close(back[0]["boxes"], boxes)
    net.train()
    torch.manual_seed(0)
    drawn = {net.preprocess(images[:1])[0].image_sizes[0] for _ in range(40)}
    assert drawn == {resized_size(50, 70, min_size=m, max_size=96) for m in (48, 64)}


def _detector_file(tmp_path, num_classes):
    """A whole detection model's weights in torchvision's key names (its RPN convolution as conv.0.0)."""
    state = _tiny_compat_network(num_classes).state_dict()
    with torch.no_grad():
        for v in state.values():
            if v.is_floating_point():
                v.add_(0.05)
    renamed = {k.replace("rpn.head.conv.", "rpn.head.conv.0.0."): v for k, v in state.items()}
    path = tmp_path / "detector.pth"
    torch.save(renamed, path)
    return path, state


@pytest.mark.parametrize("same_classes", [True, False])
def test_whole_detector_weights_load_heads_and_the_predictor_when_it_fits(train, tmp_path, same_classes):
    k = len(train.class_names)
    path, state = _detector_file(tmp_path, k if same_classes else k + 2)
    det = FasterRCNN(backbone="resnet18_fpn", compat="torchvision", weights=str(path), trainable_layers=0,
                     min_size=64, max_size=96, representation_size=32, lr=1e-12, **FAST)
    det.fit(train)
    got = det.model_.state_dict()
    for key in ("rpn.head.conv.weight", "roi_heads.box_head.fc6.weight", "backbone.fpn.layer_blocks.0.0.weight",
                "backbone.body.layer1.0.conv1.weight"):
        torch.testing.assert_close(got[key], state[key], rtol=0, atol=1e-6, msg=key)
    predictor = "roi_heads.box_predictor.cls_score.weight"
    if same_classes:
        torch.testing.assert_close(got[predictor], state[predictor], rtol=0, atol=1e-6)
    else:
        assert got[predictor].shape[0] == k + 1  # the digits' classes + background, freshly initialised
        assert not torch.allclose(got[predictor], state[predictor][:k + 1], atol=1e-3)
    dets = det.predict(train[0][0])
    assert dets.boxes.shape[1] == 4


@pytest.mark.parametrize("params, match", [
    (dict(backbone="vgg", min_size=600), "min_size"),
    (dict(backbone="resnet18", compat="torchvision"), "compat"),
    (dict(backbone="resnet18_fpn", max_size=1000), "max_size"),
    (dict(backbone="resnet18_fpn", min_size=600, image_scale=2.0), "image_scale or min_size"),
    (dict(backbone="resnet18_fpn", min_size=0), "min_size"),
    (dict(backbone="resnet18_fpn", compat="detectron2"), "compat"),
    (dict(backbone="resnet18_fpn", rpn_nms_thresh=1.5), "rpn_nms_thresh"),
    (dict(backbone="resnet18_fpn", anchor_sizes=((32, 64), (64,), (128,), (256,), (512,))), "as many sizes"),
    (dict(backbone="resnet18_fpn", anchor_sizes=((32,), (64,))), "5 anchor_sizes"),
])
def test_bad_settings_are_refused_naming_the_parameter(train, params, match):
    with pytest.raises(ValueError, match=match):
        FasterRCNN(**params, **FAST).fit(train)


def test_min_size_of_another_type_is_a_type_error(train):
    with pytest.raises(TypeError, match="min_size"):
        FasterRCNN(backbone="resnet18_fpn", min_size=(600, "x"), **FAST).fit(train)


def test_from_torchvision_refuses_what_it_cannot_reproduce(tmp_path):
    state = _tiny_compat_network(2).state_dict()
    with pytest.raises(ValueError, match="class_names has 3 names"):
        FasterRCNN.from_torchvision(state, class_names=["a", "b", "c"])
    v2 = dict(state, **{"rpn.head.conv.1.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="two convolutions"):
        FasterRCNN.from_torchvision(v2)
    with pytest.raises(ValueError, match="anchors per location"):
        FasterRCNN.from_torchvision(state, anchor_sizes=((32.0, 64.0),) * 5)
    with pytest.raises(TypeError, match="state dict"):
        models.from_torchvision(42)
    broken = {k: v for k, v in state.items() if not k.startswith("roi_heads.box_head.fc7")}
    broken["roi_heads.box_head.fc7.weight"] = torch.zeros(32, 32)
    with pytest.raises(ValueError, match="missing keys"):
        models.from_torchvision(broken)


def test_from_a_state_dict_predicts_like_the_network_it_came_from(tmp_path):
    net = _tiny_compat_network(2).eval()
    est = FasterRCNN.from_torchvision(net.state_dict(), min_size=64, max_size=96, representation_size=32,
                                      rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(30, 30))
    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    d = est.predict(image)
    with torch.no_grad():
        ref = net([engine.image_to_tensor(image)])[0]
    assert len(ref["boxes"]) > 0
    np.testing.assert_array_equal(d.boxes, ref["boxes"].numpy())
    np.testing.assert_array_equal(d.scores, ref["scores"].numpy())
