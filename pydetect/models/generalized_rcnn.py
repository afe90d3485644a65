"""The two-stage detector: backbone, proposals (RPN or precomputed), RoI heads.

Glossary of shape letters: N images; H_i, W_i size of image i; H, W padded batch size
(multiples of ``size_divisible``); P proposals per image; D detections per image.

Faster R-CNN is ``GeneralizedRCNN(backbone, rpn, roi_heads)``; Fast R-CNN is the same with
``rpn=None`` and proposals (selective search) passed to ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from pydetect.models.backbones import IMAGE_MEAN, IMAGE_STD
from pydetect.models.image_list import batch_images

__all__ = ["GeneralizedRCNN"]


class GeneralizedRCNN(nn.Module):
    """Normalise and batch images, run the backbone, propose, run the RoI heads.

    Parameters
    ----------
    backbone : module (N, 3, H, W) -> dict of feature maps, with ``out_channels``
    rpn : RegionProposalNetwork or None
        None: proposals must be given to ``forward``.
    roi_heads : RoIHeads
    image_mean, image_std : 3 floats
        Per-channel normalisation of 0-1 RGB input.
    size_divisible : int, default 32
    image_scale : float, default 1.0
        Every image is resized by this factor (bilinear) before the backbone, its targets and
        proposals with it, and the detections are mapped back to the input's pixels: small
        objects then cover more cells of a strided feature map (torchvision resizes to a
        minimum side instead; a fixed factor keeps the objects' relative sizes).

    ``forward(images list of N (3, H_i, W_i) float in [0, 1], targets=None, proposals=None)``
    returns the loss dict in training mode, else N dicts {"boxes", "scores", "labels"}.
    Targets are dicts {"boxes" (G, 4) float, "labels" (G,) int64 0-based}.
    """

    def __init__(self, backbone, rpn, roi_heads, *, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
                 size_divisible=32, image_scale=1.0):
        super().__init__()
        if not image_scale > 0:
            raise ValueError(f"image_scale must be > 0, got {image_scale!r}")
        self.image_scale = float(image_scale)
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        # Channels-last (NHWC) convolutions: a FasterRCNN training iteration on 2 cores took
        # 0.12-0.13 s instead of 0.14-0.17 s (benchmarks/RESULTS.md). The RoI ops read a
        # contiguous NCHW copy of the feature map, which costs little next to the convolutions.
        self.to(memory_format=torch.channels_last)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.size_divisible = int(size_divisible)

    def batch_images(self, images):
        """The normalised, padded batch (:func:`pydetect.models.image_list.batch_images`)."""
        return batch_images(images, self.size_divisible, self.image_mean, self.image_std)

    def rescale(self, images, targets, proposals):
        """Resizes images by ``image_scale``; returns them, the scaled targets and proposals,
        and per image the (x, y, x, y) factors that map the new pixels back to the input's."""
        factors, out_images = [], []
        for im in images:
            h, w = int(im.shape[-2]), int(im.shape[-1])
            nh, nw = max(int(round(h * self.image_scale)), 1), max(int(round(w * self.image_scale)), 1)
            out_images.append(torch.nn.functional.interpolate(im[None], size=(nh, nw), mode="bilinear",
                                                              align_corners=False)[0])
            factors.append(im.new_tensor([nw / w, nh / h, nw / w, nh / h]))
        if targets is not None:
            targets = [dict(t, boxes=t["boxes"] * f.to(t["boxes"].dtype)) for t, f in zip(targets, factors)]
        if proposals is not None:
            proposals = [p * f.to(p.dtype) for p, f in zip(proposals, factors)]
        return out_images, targets, proposals, factors

    def forward(self, images, targets=None, proposals=None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        factors = None
        if self.image_scale != 1.0:
            images, targets, proposals, factors = self.rescale(images, targets, proposals)
        x, sizes = self.batch_images(images)
        features = self.backbone(x)
        losses = {}
        if proposals is None:
            if self.rpn is None:
                raise ValueError("this model has no RPN: pass proposals")
            proposals, rpn_losses = self.rpn(tuple(x.shape[-2:]), sizes, list(features.values()), targets)
            losses.update(rpn_losses)
        detections, head_losses = self.roi_heads(features, proposals, sizes, targets)
        losses.update(head_losses)
        if self.training:
            return losses
        if factors is not None:
            detections = [dict(d, boxes=d["boxes"] / f.to(d["boxes"].dtype)) for d, f in zip(detections, factors)]
        return detections
