"""Parts shared by the one-stage (dense) detectors, YOLO and SSD.

Glossary of shape letters: N images; H_i, W_i size of image i; H, W padded batch size
(multiples of the coarsest stride); L feature levels; H_l, W_l the size of level l; A priors
(anchors, default boxes) per cell of a level; P = sum over levels of H_l W_l A, the priors
of one image; K classes; G ground-truth boxes of one image.

A one-stage detector predicts, at every cell of every level, a fixed set of outputs per prior
(box, objectness or background score, class scores): no proposals, no RoI pooling. The
predictions of one image are flattened level by level, row-major over cells, then prior by
prior within a cell: index ``p`` of the flat (P, ...) tensors is the same in the head's output,
in :func:`grid_priors` and in the targets.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pydetect import ops
from pydetect.models.image_list import batch_images

__all__ = ["ExtraLevels", "grid_priors", "flatten_levels",
           "select_detections", "DenseDetector"]

class ExtraLevels(nn.Module):
    """Coarser feature maps on top of a single-map backbone: each extra level is a 3x3
    stride-2 conv-BN-ReLU then a 3x3 conv-BN-ReLU (SSD's extra feature layers, with batch
    normalisation). ``forward(backbone features dict) -> dict "0", "1", ...`` finest first,
    the backbone's map being ``"0"``."""

    def __init__(self, in_channels, num_extra=2, channels=None):
        super().__init__()
        channels = int(channels or in_channels)
        blocks, cin = [], in_channels
        for _ in range(num_extra):
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)))
            cin = channels
        self.blocks = nn.ModuleList(blocks)
        self.channels = [in_channels] + [channels] * num_extra

    def forward(self, features):
        x = list(features.values())[-1]
        out = OrderedDict([("0", x)])
        for block in self.blocks:
            x = block(x)
            out[str(len(out))] = x
        return out


def grid_priors(shapes, stride, height, width, device=None, dtype=torch.float32):
    """Prior boxes of one level: (height * width * A, 4) xyxy, each (w, h) of ``shapes``
    (A, 2) centred on each cell centre ``((j + 0.5) stride, (i + 0.5) stride)``, cells
    row-major, the A shapes of a cell consecutive."""
    shapes = torch.as_tensor(shapes, dtype=dtype, device=device).reshape(-1, 2)
    ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) * stride
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx.reshape(-1), cy.reshape(-1)], 1)  # (H W, 2)
    half = shapes / 2
    lo = centres[:, None, :] - half[None]
    hi = centres[:, None, :] + half[None]
    return torch.cat([lo, hi], 2).reshape(-1, 4)


def flatten_levels(outputs, num_priors, values_per_prior):
    """Head outputs, a list of L (N, A_l * V, H_l, W_l) maps, as one (N, P, V) tensor in the
    module's prior order (level, row, column, prior)."""
    flat = []
    for out, a in zip(outputs, num_priors):
        n, _, h, w = out.shape
        flat.append(out.reshape(n, a, values_per_prior, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a,
                                                                                             values_per_prior))
    return torch.cat(flat, 1)


class DenseDetector(nn.Module):
    """Backbone, extra levels and a dense head; subclasses give the loss and the decoding.

    Parameters
    ----------
    backbone : module (N, 3, H, W) -> dict of feature maps, with ``out_channels`` and ``stride``
    strides : tuple of int
        The output stride of each level the head reads: the backbone's stride times powers of
        two, each power beyond the backbone's own map an extra level (:class:`ExtraLevels`).
    extra_channels : int, optional
        Channels of the extra levels (default: the backbone's).

    ``forward(images list of N (3, H_i, W_i) float in [0, 1], targets=None)`` returns the
    loss dict in training mode (targets: dicts {"boxes" (G, 4), "labels" (G,) 0-based}),
    else N dicts {"boxes", "scores", "labels"} in the input's pixels.
    """

    def __init__(self, backbone, strides, extra_channels=None):
        super().__init__()
        strides = tuple(sorted(int(s) for s in strides))
        base = int(getattr(backbone, "stride", strides[0]))
        built = [base]
        while built[-1] < strides[-1]:
            built.append(built[-1] * 2)
        if not strides or any(s not in built for s in strides) or len(set(strides)) != len(strides):
            raise ValueError(f"strides must be distinct powers of two times the backbone's stride {base} "
                             f"({', '.join(map(str, built))}, ...), got {strides}")
        self.backbone = backbone
        self.levels = ExtraLevels(backbone.out_channels, len(built) - 1, extra_channels)
        self.strides = strides
        self._level_index = [built.index(s) for s in strides]
        self.level_channels = [self.levels.channels[i] for i in self._level_index]

    def to_channels_last(self):
        # Channels-last convolutions are faster on CPUs (see GeneralizedRCNN).
        return self.to(memory_format=torch.channels_last)

    def features(self, images):
        x, sizes = batch_images(images, self.strides[-1])
        maps = list(self.levels(self.backbone(x)).values())
        return [maps[i] for i in self._level_index], sizes, tuple(x.shape[-2:])

    def forward(self, images, targets=None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        feats, sizes, padded = self.features(images)
        outputs = self.head(feats)
        if self.training:
            return self.loss(outputs, feats, targets, sizes, padded)
        return self.postprocess(outputs, feats, sizes)


def select_detections(boxes, scores, size, score_thresh, nms_thresh, detections_per_img, pre_nms_top_n=None):
    """Per-class detections of one image: (P, 4) boxes shared by the K classes, (P, K)
    scores -> a dict of the ``detections_per_img`` best after per-class NMS, boxes clipped
    to ``size`` = (H, W)."""
    k = scores.shape[1]
    flat = scores.reshape(-1)
    keep = (flat > score_thresh).nonzero().squeeze(1)
    if pre_nms_top_n is not None and keep.numel() > pre_nms_top_n:
        keep = keep[flat[keep].topk(pre_nms_top_n).indices]
    sel_scores = flat[keep]
    labels = keep % k
    sel_boxes = ops.clip_boxes(boxes[keep // k], size)
    wide = (sel_boxes[:, 2] > sel_boxes[:, 0]) & (sel_boxes[:, 3] > sel_boxes[:, 1])
    sel_boxes, sel_scores, labels = sel_boxes[wide], sel_scores[wide], labels[wide]
    kept = ops.batched_nms(sel_boxes, sel_scores, labels, nms_thresh)[:detections_per_img]
    return {"boxes": sel_boxes[kept], "scores": sel_scores[kept], "labels": labels[kept]}
