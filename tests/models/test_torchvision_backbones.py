"""torchvision-layout backbones (ResNet-18/34/50, MobileNetV3-Large, their FPN backbones):
frozen batch norm against its formula, old model files' key names, weight loading errors; and,
with torchvision installed, the same outputs and trainable parameters as torchvision's
networks given the same weights."""

import numpy as np
import pytest
import torch
from torch import nn

from pydetect.models import FPN, FrozenBatchNorm2d, ResNet18Style, load_weights, resnet, resnet_fpn_backbone


def _randomize_norms(module, seed=0):
    """Batch-norm statistics and affine parameters away from their identity defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                c = m.running_mean.shape[0]
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return module


def test_frozen_batch_norm_is_the_formula_and_loads_batch_norm_weights():
    bn = _randomize_norms(nn.BatchNorm2d(5)).eval()
    frozen = FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, not an error
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    frozen.double()
    ref = ((x - bn.running_mean.double().view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.double().view(1, -1, 1, 1)
           + 1e-5) * bn.weight.double().view(1, -1, 1, 1) + bn.bias.double().view(1, -1, 1, 1))
    torch.testing.assert_close(frozen(x), ref, rtol=1e-12, atol=1e-12)
    assert not list(frozen.parameters())  # buffers only: nothing to train


@pytest.mark.parametrize("name,channels", [("resnet18", [64, 128, 256, 512]), ("resnet34", [64, 128, 256, 512]),
                                           ("resnet50", [256, 512, 1024, 2048])])
def test_shapes_strides_and_trainable_layers(name, channels):
    net = resnet(name, (1, 2, 3, 4), trainable_layers=2)
    out = net(torch.rand(1, 3, 64, 96))
    assert [v.shape[1] for v in out.values()] == channels == net.stage_channels
    assert [v.shape[-2:] for v in out.values()] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    trains = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trains == {"layer3", "layer4"}
    # frozen batch norm has no parameters, so bn1 is not among them even at 5
    assert {n.split(".")[0] for n, p in resnet(name, trainable_layers=5).named_parameters()
            if p.requires_grad} == {"conv1", "layer1", "layer2", "layer3", "layer4"}
    assert {n.split(".")[0] for n, p in resnet(name, trainable_layers=5, frozen_bn=False).named_parameters()
            if p.requires_grad} == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    with pytest.raises(ValueError, match="trainable_layers"):
        resnet(name, trainable_layers=6)
    with pytest.raises(ValueError, match="name must be one of"):
        resnet("resnet101")


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    small = resnet("resnet18").state_dict()
    with pytest.raises(ValueError, match=r"missing keys \(.*layer1\.0\.conv3\.weight.*of another shape \("
                                         r"layer1\.0\.conv1\.weight \(64, 64, 3, 3\) vs \(64, 64, 1, 1\)"):
        load_weights(resnet("resnet50"), small)
    with pytest.raises(ValueError, match=r"1 unexpected keys \(extra\.weight\)"):
        load_weights(resnet("resnet18"), dict(small, **{"extra.weight": torch.zeros(1)}))
    path = tmp_path / "r18.pt"
    torch.save({"model": small}, path)  # a checkpoint-style wrapper is unwrapped
    load_weights(resnet("resnet18"), path)


def test_model_files_with_the_old_key_names_still_load():
    """FPN convs were "lateral.i" / "output.i" and the basic block's shortcut "down": files
    written then load into the renamed modules and compute the same maps."""
    torch.manual_seed(0)
    body = ResNet18Style(widths=(8, 16, 24, 32), return_layers=(2, 3, 4))
    fpn = FPN(body.stage_channels, 16)
    x = torch.rand(1, 3, 64, 64)
    body.eval()
    want = fpn(body(x))
    old = {}
    for k, v in dict(body.state_dict(), **{f"fpn.{k}": v for k, v in fpn.state_dict().items()}).items():
        k = k.replace(".downsample.", ".down.")
        for new, was in (("inner_blocks.", "lateral."), ("layer_blocks.", "output.")):
            if f"fpn.{new}" in k:
                i, rest = k.split(new)[1].split(".", 1)
                k = f"fpn.{was}{i}.{rest.split('.', 1)[1]}"
        old[k] = v
    assert any(".down." in k for k in old) and any(k.startswith("fpn.lateral.0.") for k in old)
    torch.manual_seed(1)
    body2, fpn2 = ResNet18Style(widths=(8, 16, 24, 32), return_layers=(2, 3, 4)), FPN([16, 24, 32], 16)
    body2.load_state_dict({k: v for k, v in old.items() if not k.startswith("fpn.")})
    fpn2.load_state_dict({k[4:]: v for k, v in old.items() if k.startswith("fpn.")})
    got = fpn2(body2.eval()(x))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


# ----------------------------------------------------------------------------- torchvision parity
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_same_stages_as_torchvision_given_its_weights(name):
    tvm = pytest.importorskip("torchvision.models", reason="torchvision's ResNets are the reference")
    from torchvision.models._utils import IntermediateLayerGetter

    torch.manual_seed(0)
    peer = _randomize_norms(getattr(tvm, name)(weights=None)).eval()
    ours = load_weights(resnet(name, (1, 2, 3, 4), trainable_layers=5), peer.state_dict()).eval()
    getter = IntermediateLayerGetter(peer, {f"layer{k}": str(k - 1) for k in range(1, 5)})
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        want, got = getter(x), ours(x)
    for k in want:  # float rounding only: frozen batch norm multiplies where torch's divides
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5 * float(want[k].abs().max()))


@pytest.mark.parametrize("trainable_layers", [0, 3, 5])
def test_fpn_backbone_equals_torchvision_resnet_fpn_backbone(trainable_layers):
    pytest.importorskip("torchvision", reason="torchvision's resnet_fpn_backbone is the reference")
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

    torch.manual_seed(0)
    peer = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=trainable_layers)
    _randomize_norms(peer)
    ours = load_weights(resnet_fpn_backbone("resnet50", trainable_layers=trainable_layers), peer.state_dict())
    assert set(ours.state_dict()) == set(peer.state_dict())  # torchvision's names, nothing else
    assert ({n for n, p in ours.named_parameters() if p.requires_grad}
            == {n for n, p in peer.named_parameters() if p.requires_grad})
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        want, got = peer.eval()(x), ours.eval()(x)
    assert list(got) == list(want) == ["0", "1", "2", "3", "pool"]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4)


def test_backbone_of_a_torchvision_detection_model_loads_with_its_prefix():
    pytest.importorskip("torchvision", reason="torchvision's Faster R-CNN is the reference")
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    ours = load_weights(resnet_fpn_backbone("resnet50"), model.state_dict(), prefix="backbone.").eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        want, got = model.backbone(x), ours(x)
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- MobileNetV3
def test_mobilenet_shapes_and_trainable_stages():
    from pydetect.models import mobilenet_v3_fpn_backbone, mobilenet_v3_large_features

    net = mobilenet_v3_large_features((13, 16), trainable_layers=2)
    assert net.stage_starts() == [0, 2, 4, 7, 13, 16]
    out = net(torch.rand(1, 3, 128, 96))
    assert [tuple(v.shape) for v in out.values()] == [(1, 160, 4, 3), (1, 960, 4, 3)]  # both stride 32
    assert {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad} == {"13", "14", "15", "16"}
    fpn = mobilenet_v3_fpn_backbone()
    assert list(fpn(torch.rand(1, 3, 128, 96))) == ["0", "1", "pool"]
    with pytest.raises(ValueError, match="trainable_layers"):
        mobilenet_v3_large_features(trainable_layers=7)


@pytest.mark.parametrize("trainable_layers", [0, 3, 6])
def test_mobilenet_fpn_backbone_equals_torchvision(trainable_layers):
    pytest.importorskip("torchvision", reason="torchvision's MobileNetV3 extractor is the reference")
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozen

    from pydetect.models import mobilenet_v3_fpn_backbone

    torch.manual_seed(0)
    # As torchvision's detector builds it with pretrained weights: frozen batch norm.
    peer = _mobilenet_extractor(_randomize_norms_tv(mobilenet_v3_large(weights=None, norm_layer=TVFrozen)), True,
                                trainable_layers)
    ours = load_weights(mobilenet_v3_fpn_backbone(trainable_layers), peer.state_dict())
    assert set(ours.state_dict()) == set(peer.state_dict())
    assert ({n for n, p in ours.named_parameters() if p.requires_grad}
            == {n for n, p in peer.named_parameters() if p.requires_grad})
    x = torch.rand(2, 3, 160, 128)
    with torch.no_grad():
        want, got = peer.eval()(x), ours.eval()(x)
    assert list(got) == list(want) == ["0", "1", "pool"]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5 * float(want[k].abs().max()))


def test_mobilenet_backbone_of_an_untrained_torchvision_detector():
    """Without weights torchvision's detector keeps trainable batch norm (BatchNorm2d, eps 1e-5)."""
    pytest.importorskip("torchvision", reason="torchvision's Faster R-CNN is the reference")
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    from pydetect.models import mobilenet_v3_fpn_backbone

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    _randomize_norms(model.backbone)
    ours = load_weights(mobilenet_v3_fpn_backbone(frozen_bn=False), model.state_dict(), prefix="backbone.")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        want, got = model.backbone.eval()(x), ours.eval()(x)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5 * float(want[k].abs().max()))


def _randomize_norms_tv(module, seed=0):
    """_randomize_norms for torchvision's FrozenBatchNorm2d too."""
    from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozen

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, TVFrozen)):
                c = m.running_mean.shape[0]
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return module
