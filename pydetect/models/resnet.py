"""ResNet-18/34/50 with torchvision's module layout and parameter names, so that torchvision's
state dicts (ImageNet weights, or the backbone of a torchvision detection model) load as they
are; frozen batch normalisation and the choice of trainable layers as torchvision's detection
backbones have them; :func:`load_weights` with a clear error for keys that do not match.
:func:`resnet_fpn_backbone` puts a feature pyramid on top, as torchvision's
``fasterrcnn_resnet50_fpn``.

Shape letters: N images, C channels, H x W input; stage ``k`` (``layer1`` .. ``layer4``) has
stride ``2 ** (k + 1)``.

References: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the
bottleneck's stride on its 3x3 convolution, as torchvision and most detectors use it);
T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from pydetect.models.fpn import BackboneWithFPN

__all__ = ["FrozenBatchNorm2d", "BasicBlock", "Bottleneck", "ResNet", "resnet", "RESNET_DEPTHS", "resnet_fpn_backbone",
           "load_weights"]


class FrozenBatchNorm2d(nn.Module):
    """Batch normalisation with fixed statistics and affine parameters (buffers, not parameters):
    ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``. Detectors train with batches
    of one or two images, too few for batch statistics, so they keep the pretrained ones.
    Loads a ``BatchNorm2d`` state dict (its ``num_batches_tracked`` is dropped)."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _downsample(inplanes, outplanes, stride, norm_layer):
    """The shortcut's 1x1 projection where the block changes the shape, else None."""
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), norm_layer(outplanes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34); ``planes`` output channels."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = _downsample(inplanes, planes, stride, norm_layer)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Model files written before this layout named the shortcut "down".
        for key in [k for k in state_dict if k.startswith(prefix + "down.")]:
            state_dict[prefix + "downsample." + key[len(prefix + "down."):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)), inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * planes`` channels, and a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.downsample = _downsample(inplanes, planes * 4, stride, norm_layer)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)), inplace=True)


#: Blocks per stage and block type of each depth.
RESNET_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """A ResNet body: ``conv1`` (7x7/2), ``bn1``, 3x3/2 max pooling, ``layer1`` .. ``layer4``.

    Parameters
    ----------
    depth : {18, 34, 50}
    return_layers : tuple of int, default (4,)
        Stages (1..4) whose outputs :meth:`forward` returns, named ``"0"``, ``"1"``, ... in order.
    norm_layer : callable, default FrozenBatchNorm2d
        ``norm_layer(channels)``; ``nn.BatchNorm2d`` to train the statistics too.
    trainable_layers : int in 0..5, default 3
        How many of ``layer4, layer3, layer2, layer1, conv1`` (from the top) train; the others'
        parameters get ``requires_grad=False`` (torchvision's detection backbones: 3). With 5,
        ``bn1`` trains too.

    Attributes
    ----------
    stage_channels : list of int
        Channels of each returned stage; ``out_channels`` is the last; ``stride`` the last's stride.
    """

    def __init__(self, depth=50, return_layers=(4,), norm_layer=FrozenBatchNorm2d, trainable_layers=3):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"depth must be one of {sorted(RESNET_DEPTHS)}, got {depth!r}")
        if not return_layers or any(r not in (1, 2, 3, 4) for r in return_layers):
            raise ValueError(f"return_layers must be stages in 1..4, got {return_layers!r}")
        if isinstance(trainable_layers, bool) or trainable_layers not in range(6):
            raise ValueError(f"trainable_layers must be an int in 0..5, got {trainable_layers!r}")
        block, counts = RESNET_DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for k, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
            blocks = []
            for i in range(count):
                blocks.append(block(inplanes, planes, 2 if (i == 0 and k > 1) else 1, norm_layer))
                inplanes = planes * block.expansion
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
        self._init_weights()
        self.return_layers = tuple(sorted(return_layers))
        self.stage_channels = [64 * 2 ** (r - 1) * block.expansion for r in self.return_layers]
        self.out_channels = self.stage_channels[-1]
        self.stride = 2 ** (self.return_layers[-1] + 1)
        trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            trainable.append("bn1")
        for name, p in self.named_parameters():
            if not any(name.startswith(t) for t in trainable):
                p.requires_grad_(False)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        out = OrderedDict()
        for k in range(1, self.return_layers[-1] + 1):
            x = getattr(self, f"layer{k}")(x)
            if k in self.return_layers:
                out[str(len(out))] = x
        return out


def resnet(name, return_layers=(4,), trainable_layers=3, frozen_bn=True):
    """``"resnet18"``, ``"resnet34"`` or ``"resnet50"`` as a :class:`ResNet` body."""
    depths = {f"resnet{d}": d for d in RESNET_DEPTHS}
    if name not in depths:
        raise ValueError(f"name must be one of {sorted(depths)}, got {name!r}")
    return ResNet(depths[name], return_layers, FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d,
                  trainable_layers)


def resnet_fpn_backbone(name="resnet50", trainable_layers=3, out_channels=256, frozen_bn=True):
    """A torchvision-layout ResNet (:func:`resnet`) and a feature pyramid
    over its four stages plus a max-pooled fifth level, as the backbone of torchvision's
    ``fasterrcnn_resnet50_fpn``: outputs ``"0"`` .. ``"3"`` (strides 4 .. 32) and ``"pool"``
    (stride 64), ``out_channels`` each. Its state dict has torchvision's keys (``body.layer1...``,
    ``fpn.inner_blocks.0.0.weight``, ...): ``load_weights(backbone, path, prefix="backbone.")``
    takes the backbone of a torchvision detection model's weights."""
    return BackboneWithFPN(resnet(name, (1, 2, 3, 4), trainable_layers, frozen_bn), out_channels, pool_level=True)


def load_weights(module, state_dict, prefix="", ignore=("fc.",)):
    """Loads the entries of ``state_dict`` that start with ``prefix`` (stripped) into ``module``.

    Parameters
    ----------
    module : torch.nn.Module
    state_dict : dict of str to Tensor, or a path
        A path is read with ``torch.load(weights_only=True)`` (tensors only: never arbitrary
        objects). A dict holding a ``"model"`` or ``"state_dict"`` entry is unwrapped.
    prefix : str
        E.g. ``"backbone."`` to take the backbone of a torchvision detection model's state dict.
    ignore : tuple of str
        Key prefixes (after ``prefix``) that are neither loaded nor reported, e.g. a
        classification model's ``fc.`` head.

    Raises
    ------
    ValueError
        Naming the missing and the unexpected keys (up to 10 of each) when they do not match.
    """
    if not isinstance(state_dict, dict):
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    picked = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    picked = {k: v for k, v in picked.items() if not k.startswith(tuple(ignore))}
    own = module.state_dict()
    # Frozen batch norm keeps no batch counter: a BatchNorm2d's is not an unexpected key.
    unexpected = [k for k in picked if k not in own and not k.endswith("num_batches_tracked")]
    missing = [k for k in own if k not in picked]
    mismatched = [f"{k} {tuple(picked[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in picked and tuple(picked[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        def few(keys):
            return (", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")) or "none"
        raise ValueError(f"the weights do not fit the module ({type(module).__name__}, prefix {prefix!r}): "
                         f"{len(missing)} missing keys ({few(missing)}), {len(unexpected)} unexpected keys "
                         f"({few(unexpected)}), {len(mismatched)} of another shape ({few(mismatched)})")
    module.load_state_dict({k: v for k, v in picked.items() if k in own})
    return module
