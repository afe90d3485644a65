"""The two-stage detector: backbone, proposals (RPN or precomputed), RoI heads.

Glossary of shape letters: N images; H_i, W_i size of image i; H, W padded batch size
(multiples of ``size_divisible``); P proposals per image; D detections per image.

Faster R-CNN is ``GeneralizedRCNN(backbone, rpn, roi_heads)``; Fast R-CNN is the same with
``rpn=None`` and proposals (selective search) passed to ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

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

    ``forward(images list of N (3, H_i, W_i) float in [0, 1], targets=None, proposals=None)``
    returns the loss dict in training mode, else N dicts {"boxes", "scores", "labels"}.
    Targets are dicts {"boxes" (G, 4) float, "labels" (G,) int64 0-based}.
    """

    def __init__(self, backbone, rpn, roi_heads, *, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25),
                 size_divisible=32):
        super().__init__()
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        self.register_buffer("image_mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(3, 1, 1), persistent=False)
        self.size_divisible = int(size_divisible)

    def batch_images(self, images):
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        d = self.size_divisible
        h = -(-max(s[0] for s in sizes) // d) * d
        w = -(-max(s[1] for s in sizes) // d) * d
        batch = images[0].new_zeros((len(images), 3, h, w))
        for i, im in enumerate(images):
            batch[i, :, :im.shape[-2], :im.shape[-1]] = (im - self.image_mean) / self.image_std
        return batch, sizes

    def forward(self, images, targets=None, proposals=None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        x, sizes = self.batch_images(images)
        features = self.backbone(x)
        losses = {}
        if proposals is None:
            if self.rpn is None:
                raise ValueError("this model has no RPN: pass proposals")
            proposals, rpn_losses = self.rpn(tuple(x.shape[-2:]), sizes, list(features.values()), targets)
            losses.update(rpn_losses)
        if hasattr(self.roi_heads.box_roi_pool, "image_shape"):
            self.roi_heads.box_roi_pool.image_shape = tuple(x.shape[-2:])
        detections, head_losses = self.roi_heads(features, proposals, sizes, targets)
        losses.update(head_losses)
        return losses if self.training else detections
