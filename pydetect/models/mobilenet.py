"""MobileNetV3-Large with torchvision's module layout and parameter names (``features.i...``), so
that its ImageNet weights or the backbone of its ``fasterrcnn_mobilenet_v3_large_fpn`` load as
they are, and :func:`mobilenet_v3_fpn_backbone`, that detector's backbone.

Reference: A. Howard et al., "Searching for MobileNetV3", ICCV 2019 (table 1: the large model's
blocks; hard-swish; squeeze-and-excitation with a hard sigmoid gate).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import nn

from pydetect.models.fpn import BackboneWithFPN
from pydetect.models.resnet import FrozenBatchNorm2d

__all__ = ["MobileNetV3Features", "mobilenet_v3_large_features", "mobilenet_v3_fpn_backbone"]

#: MobileNetV3-Large's blocks: (input channels, kernel, expanded channels, output channels,
#: squeeze-and-excitation, hard-swish (else ReLU), stride).
LARGE_BLOCKS = (
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1),
)


def _divisible(value, divisor=8):
    """``value`` rounded to a multiple of ``divisor``, not below 90% of it (MobileNet's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormActivation(nn.Sequential):
    """Convolution (no bias), normalisation, and an activation unless None: children 0, 1, 2."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, norm_layer=nn.BatchNorm2d, activation=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  norm_layer(cout)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class SqueezeExcitation(nn.Module):
    """Channel gate: global average, 1x1 conv down (ReLU), 1x1 conv up, hard sigmoid, times x."""

    def __init__(self, channels, squeeze_channels):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x):
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)), inplace=True))
        return x * F.hardsigmoid(gate)


class InvertedResidual(nn.Module):
    """Expand (1x1, when the width changes), depthwise kxk (strided), optional squeeze-and-excitation,
    project (1x1, linear); the input is added back when the shape is kept."""

    def __init__(self, cin, kernel, expanded, cout, se, hard_swish, stride, norm_layer):
        super().__init__()
        act = nn.Hardswish if hard_swish else nn.ReLU
        layers = []
        if expanded != cin:
            layers.append(ConvNormActivation(cin, expanded, 1, norm_layer=norm_layer, activation=act))
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, expanded, norm_layer, act))
        if se:
            layers.append(SqueezeExcitation(expanded, _divisible(expanded // 4)))
        layers.append(ConvNormActivation(expanded, cout, 1, norm_layer=norm_layer, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cout
        self.strided = stride > 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return y + x if self.residual else y


class MobileNetV3Features(nn.Sequential):
    """MobileNetV3-Large's feature layers (torchvision's ``features``: children ``"0"`` .. ``"16"``):
    a 3x3/2 stem, the 15 inverted residual blocks, a 1x1 conv to 960 channels.

    ``forward`` returns the outputs of the children in ``return_layers`` (indices), named ``"0"``,
    ``"1"``, ... in order. ``stage_channels`` are their channels, ``out_channels`` the last's.
    """

    def __init__(self, norm_layer, return_layers=(16,)):
        layers = [ConvNormActivation(3, 16, 3, 2, norm_layer=norm_layer, activation=nn.Hardswish)]
        layers += [InvertedResidual(*spec, norm_layer=norm_layer) for spec in LARGE_BLOCKS]
        layers.append(ConvNormActivation(160, 960, 1, norm_layer=norm_layer, activation=nn.Hardswish))
        super().__init__(*layers)
        if not return_layers or any(not 0 <= r < len(self) for r in return_layers):
            raise ValueError(f"return_layers must be child indices in 0..{len(self) - 1}, got {return_layers!r}")
        self.return_layers = tuple(sorted(return_layers))
        self.stage_channels = [self[r].out_channels for r in self.return_layers]
        self.out_channels = self.stage_channels[-1]

    def stage_starts(self):
        """Indices of the stem, of each strided block and of the last layer: torchvision's stages,
        from which ``trainable_layers`` counts."""
        return [0] + [i for i, m in enumerate(self) if getattr(m, "strided", False)] + [len(self) - 1]

    def forward(self, x):
        out = OrderedDict()
        for i, layer in enumerate(self):
            x = layer(x)
            if i in self.return_layers:
                out[str(len(out))] = x
            if i == self.return_layers[-1]:
                break
        return out


def mobilenet_v3_large_features(return_layers=(16,), trainable_layers=3, frozen_bn=True):
    """MobileNetV3-Large's features with the first stages frozen as torchvision's detection
    backbones freeze them.

    Parameters
    ----------
    return_layers : tuple of int
        Children whose outputs are returned (12: stride 16, 112 channels; 13: stride 32, 160;
        16: stride 32, 960).
    trainable_layers : int in 0..6, default 3
        How many stages, counted from the top, train (the parameters of the children before the
        first of them get ``requires_grad=False``; 0 freezes all).
    frozen_bn : bool, default True
        ``FrozenBatchNorm2d``, else ``BatchNorm2d``: what torchvision's detector uses with and
        without pretrained weights (both with eps 1e-5, not the classification network's 0.001).
    """
    norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    features = MobileNetV3Features(norm, return_layers)
    starts = features.stage_starts()
    if isinstance(trainable_layers, bool) or trainable_layers not in range(len(starts) + 1):
        raise ValueError(f"trainable_layers must be an int in 0..{len(starts)}, got {trainable_layers!r}")
    freeze_before = len(features) if trainable_layers == 0 else starts[len(starts) - trainable_layers]
    for layer in list(features)[:freeze_before]:
        for p in layer.parameters():
            p.requires_grad_(False)
    for m in features.modules():  # MobileNet's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return features


def mobilenet_v3_fpn_backbone(trainable_layers=3, out_channels=256, frozen_bn=True):
    """The backbone of torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``: a feature pyramid
    over children 13 and 16 (both stride 32) plus a max-pooled level (stride 64), outputs ``"0"``,
    ``"1"``, ``"pool"``. State dict keys are torchvision's (``body.13.block.0.0.weight``,
    ``fpn.inner_blocks.0.0.weight``, ...): ``load_weights(backbone, path, prefix="backbone.")``
    takes a torchvision detector's backbone."""
    body = mobilenet_v3_large_features((13, 16), trainable_layers, frozen_bn)
    return BackboneWithFPN(body, out_channels, pool_level=True)
