"""Backbones defined in pydetect: a small VGG-style net, a ResNet-18-style net, and an FPN.

Glossary of shape letters: N images; C channels; H, W input size; a backbone returns an
ordered dict of feature maps ``{name: (N, C_out, H / s, W / s)}`` (s its stride) and has
``out_channels``; classification heads for crop pretraining map (N, 3, h, w) -> (N, K).

References: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks", ICLR 2015 (VGG);
K. He et al., "Deep Residual Learning", CVPR 2016 (ResNet-18 layout, BasicBlock);
T.-Y. Lin et al., "Feature Pyramid Networks", CVPR 2017; S. Ioffe, C. Szegedy, batch
normalisation, ICML 2015.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from pydetect import ops
from pydetect.models.resnet import BasicBlock, resnet

__all__ = ["IMAGE_MEAN", "IMAGE_STD", "normalize_images", "build_backbone", "VGGStyle", "ResNet18Style", "FPN", "BackboneWithFPN",
           "resnet_fpn_backbone", "CropClassifier"]

#: Per-channel normalisation of 0-1 RGB input that every pydetect backbone is trained with:
#: the crop pretraining's crops, the R-CNN family's images and the one-stage batches alike.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)


def normalize_images(x: torch.Tensor, mean=IMAGE_MEAN, std=IMAGE_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a (3, H, W) or (N, 3, H, W) 0-1 tensor (a new tensor)."""
    m = x.new_tensor(mean).view(3, 1, 1)
    s = x.new_tensor(std).view(3, 1, 1)
    return (x - m) / s


def conv_bn_relu(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class VGGStyle(nn.Module):
    """Stages of 3x3 conv-BN-ReLU layers separated by 2x2 max pooling.

    Parameters
    ----------
    widths : tuple of int, default (24, 32, 64, 128)
        Channels of each stage; the first stage's first conv has stride 2.
    depths : tuple of int, default (1, 1, 2, 2)
        Convs per stage.

    The output stride is ``2 ** len(widths) / 2`` (8 by default); one feature map ``"0"``.
    The default has 0.29 M parameters: small enough to train from scratch on 2 CPU cores.
    """

    def __init__(self, widths=(24, 32, 64, 128), depths=(1, 1, 2, 2), in_channels=3):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError("widths and depths must be non-empty and of equal length")
        layers, cin = [], in_channels
        for i, (w, d) in enumerate(zip(widths, depths)):
            if i > 1:
                layers.append(nn.MaxPool2d(2))
            for j in range(d):
                layers.append(conv_bn_relu(cin, w, stride=2 if (i == 0 and j == 0) else 1))
                cin = w
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]
        self.stride = 2 ** max(len(widths) - 1, 1)

    def forward(self, x):
        return OrderedDict([("0", self.body(x))])


class ResNet18Style(nn.Module):
    """ResNet-18 layout: 7x7/2 stem, 3x3/2 max pool, four stages of two BasicBlocks.

    Parameters
    ----------
    widths : tuple of 4 int, default (64, 128, 256, 512)
        ResNet-18's widths; smaller ones (e.g. (16, 32, 64, 128)) train faster on a CPU.
    return_layers : tuple of int, default (4,)
        Stages (1..4, strides 4, 8, 16, 32) to return, named "0", "1", ... in that order.
    """

    def __init__(self, widths=(64, 128, 256, 512), return_layers=(4,), in_channels=3):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must have 4 entries, got {widths!r}")
        if not return_layers or any(r not in (1, 2, 3, 4) for r in return_layers):
            raise ValueError(f"return_layers must be stages in 1..4, got {return_layers!r}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.return_layers = tuple(sorted(return_layers))
        self.stage_channels = [widths[r - 1] for r in self.return_layers]
        self.out_channels = self.stage_channels[-1]
        self.stride = 2 ** (self.return_layers[-1] + 1)

    def forward(self, x):
        x = self.stem(x)
        out = OrderedDict()
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.return_layers:
                out[str(len(out))] = x
            if i == self.return_layers[-1]:
                break
        return out


class FPN(nn.Module):
    """Feature pyramid: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs.

    ``forward(dict of L maps, finest first) -> dict of L maps with out_channels`` (and, with
    ``pool_level``, a last map ``"pool"``: the coarsest output max-pooled with stride 2, as
    torchvision's ``LastLevelMaxPool``). Parameter names are torchvision's
    (``inner_blocks.i.0``: lateral conv i, ``layer_blocks.i.0``: output conv i), so its FPN
    weights load as they are.
    """

    def __init__(self, in_channels_list, out_channels, pool_level=False):
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels_list)
        self.layer_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1))
                                          for _ in in_channels_list)
        self.out_channels = out_channels
        self.pool_level = bool(pool_level)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Model files written before these names called the convs "lateral.i" and "output.i".
        for old, new in (("lateral.", "inner_blocks."), ("output.", "layer_blocks.")):
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                index, rest = key[len(prefix + old):].split(".", 1)
                state_dict[f"{prefix}{new}{index}.0.{rest}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features):
        names, maps = list(features.keys()), list(features.values())
        last = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last)]
        for i in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[i](maps[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[i](last))
        out = OrderedDict(zip(names, results))
        if self.pool_level:
            out["pool"] = F.max_pool2d(results[-1], 1, 2, 0)
        return out


class BackboneWithFPN(nn.Module):
    """A multi-output backbone followed by an FPN: ``out_channels`` is the FPN's."""

    def __init__(self, body, out_channels=64, pool_level=False):
        super().__init__()
        self.body = body
        self.fpn = FPN(body.stage_channels, out_channels, pool_level)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def resnet_fpn_backbone(name="resnet50", trainable_layers=3, out_channels=256, frozen_bn=True):
    """A torchvision-layout ResNet (:func:`pydetect.models.resnet.resnet`) and a feature pyramid
    over its four stages plus a max-pooled fifth level, as the backbone of torchvision's
    ``fasterrcnn_resnet50_fpn``: outputs ``"0"`` .. ``"3"`` (strides 4 .. 32) and ``"pool"``
    (stride 64), ``out_channels`` each. Its state dict has torchvision's keys (``body.layer1...``,
    ``fpn.inner_blocks.0.0.weight``, ...): ``load_weights(backbone, path, prefix="backbone.")``
    takes the backbone of a torchvision detection model's weights."""
    return BackboneWithFPN(resnet(name, (1, 2, 3, 4), trainable_layers, frozen_bn), out_channels, pool_level=True)


class CropClassifier(nn.Module):
    """Backbone + global average pooling + linear layer, to pretrain a backbone on crops.

    The offline analogue of ImageNet pretraining: classify object crops (K classes) and
    background crops (one more class) of the training set before detection training.
    """

    def __init__(self, backbone, num_classes):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.out_channels, num_classes)

    def forward(self, x, boxes=None):
        """(N, 3, h, w) -> (N, K) scores; with ``boxes`` (N, 4) in crop pixels, the average
        of the RoIAlign (7x7) of each crop's box, as the detector's pooled RoI branch sees it."""
        f = list(self.backbone(x).values())[-1]
        if boxes is None:
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1))

        rois = torch.cat([torch.arange(len(boxes), dtype=f.dtype, device=f.device)[:, None], boxes.to(f.dtype)], 1)
        pooled = ops.roi_align(f, rois, 7, f.shape[-1] / x.shape[-1], 2, True)
        return self.fc(pooled.mean((2, 3)))


def build_backbone(backbone, fpn=False):
    """A backbone by name (``"vgg"``, or ``"resnet18"`` with or without an FPN) or the given
    module, which must have ``out_channels``."""
    if isinstance(backbone, torch.nn.Module):
        if not hasattr(backbone, "out_channels"):
            raise ValueError("a backbone module must have an out_channels attribute")
        return backbone
    if backbone == "vgg":
        if fpn:
            raise ValueError("fpn=True needs backbone='resnet18'")
        return VGGStyle()
    if backbone == "resnet18":
        if fpn:
            return BackboneWithFPN(ResNet18Style(return_layers=(2, 3, 4)), 64)
        return ResNet18Style(return_layers=(3,))
    raise ValueError(f"backbone must be 'vgg', 'resnet18' or a torch module, got {backbone!r}")
