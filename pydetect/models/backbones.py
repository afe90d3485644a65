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
from pydetect.models.fpn import BackboneWithFPN
from pydetect.models.mobilenet import mobilenet_v3_fpn_backbone
from pydetect.models.resnet import BasicBlock, load_weights, resnet_fpn_backbone

__all__ = ["IMAGE_MEAN", "IMAGE_STD", "IMAGENET_MEAN", "IMAGENET_STD", "TORCHVISION_BACKBONES", "normalize_images",
           "build_backbone", "load_backbone_weights", "VGGStyle", "ResNet18Style", "CropClassifier"]

#: The normalisation torchvision's (ImageNet) weights expect; the torchvision-layout backbones
#: (:data:`TORCHVISION_BACKBONES`) are always fed with it, with or without those weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Backbones with torchvision's layout and parameter names, by the name ``build_backbone`` takes.
TORCHVISION_BACKBONES = ("resnet18_fpn", "resnet34_fpn", "resnet50_fpn", "mobilenet_v3_large_fpn")

#: Per-channel normalisation of 0-1 RGB input that pydetect's own backbones are trained with:
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


def build_backbone(backbone, fpn=False, trainable_layers=3):
    """A backbone by name or the given module, which must have ``out_channels``.

    Names: ``"vgg"``; ``"resnet18"`` (pydetect's small ResNet-18-style net, with an FPN when
    ``fpn``); or one of :data:`TORCHVISION_BACKBONES` (torchvision's layout, FPN included;
    ``trainable_layers`` as torchvision's detectors count them)."""
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
    if backbone == "mobilenet_v3_large_fpn":
        return mobilenet_v3_fpn_backbone(trainable_layers)
    if backbone in TORCHVISION_BACKBONES:
        return resnet_fpn_backbone(backbone[:-len("_fpn")], trainable_layers)
    raise ValueError(f"backbone must be 'vgg', 'resnet18', one of {list(TORCHVISION_BACKBONES)} or a torch module, "
                     f"got {backbone!r}")


def load_backbone_weights(backbone, weights):
    """Loads torchvision-format weights into a torchvision-layout FPN backbone.

    ``weights`` (a path read with ``torch.load(weights_only=True)``, or a state dict) may be a
    whole detection model's (keys ``backbone.body...``, ``backbone.fpn...``: the backbone and its
    pyramid load), a backbone-with-FPN's (``body...``, ``fpn...``), or a classification network's
    (a ResNet's ``conv1...`` / ``layer1...``, a MobileNetV3's ``features...``: the body loads and
    the pyramid keeps its initialisation; the classifier is ignored). ValueError names the keys
    that do not fit (:func:`pydetect.models.load_weights`).
    """
    if not isinstance(weights, dict):
        weights = torch.load(weights, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(weights.get(wrapper), dict):
            weights = weights[wrapper]
    keys = list(weights)
    if any(k.startswith("backbone.body.") for k in keys):
        return load_weights(backbone, weights, prefix="backbone.")
    if any(k.startswith("body.") for k in keys):
        return load_weights(backbone, weights)
    if any(k.startswith("features.") for k in keys):
        load_weights(backbone.body, weights, prefix="features.")
        return backbone
    load_weights(backbone.body, weights, ignore=("fc.",))
    return backbone
