"""Feature pyramid networks (T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection",
CVPR 2017) with torchvision's parameter names, and a backbone wrapped with one."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import nn

__all__ = ["FPN", "BackboneWithFPN"]


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
    """A multi-output backbone followed by an FPN: ``out_channels`` is the FPN's; ``level_names``
    the keys of its output, finest first (``"pool"`` last with ``pool_level``)."""

    def __init__(self, body, out_channels=64, pool_level=False):
        super().__init__()
        self.body = body
        self.fpn = FPN(body.stage_channels, out_channels, pool_level)
        self.out_channels = out_channels
        self.level_names = [str(i) for i in range(len(body.stage_channels))] + (["pool"] if pool_level else [])

    def forward(self, x):
        return self.fpn(self.body(x))
