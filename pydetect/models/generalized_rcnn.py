"""The two-stage detector: backbone, proposals (RPN or precomputed), RoI heads.

Glossary of shape letters: N images; H_i, W_i size of image i; H, W padded batch size
(multiples of ``size_divisible``); P proposals per image; D detections per image.

Faster R-CNN is ``GeneralizedRCNN(backbone, rpn, roi_heads)``; Fast R-CNN is the same with
``rpn=None`` and proposals (selective search) passed to ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from pydetect.models.backbones import IMAGE_MEAN, IMAGE_STD, normalize_images
from pydetect.models.image_list import pad_images

__all__ = ["GeneralizedRCNN", "resized_size"]


def resized_size(h: int, w: int, image_scale=1.0, min_size=None, max_size=None):
    """The (height, width) an (h, w) image is resized to before the backbone.

    With ``min_size`` (torchvision's rule): the factor ``min(min_size / min(h, w), max_size /
    max(h, w))`` (``max_size`` None: no cap), and the size ``floor(side * factor)`` as
    ``torch.nn.functional.interpolate(scale_factor=..., recompute_scale_factor=True)`` rounds it,
    so that a model converted from torchvision sees the same pixels. Else ``image_scale``, each
    side rounded to the nearest integer (at least 1).
    """
    if min_size is not None:
        factor = min_size / min(h, w)
        if max_size is not None:
            factor = min(factor, max_size / max(h, w))
        return max(int(h * factor), 1), max(int(w * factor), 1)
    if image_scale == 1.0:
        return h, w
    return max(int(round(h * image_scale)), 1), max(int(round(w * image_scale)), 1)


def _size_ratios(new, old, like):
    """(x, y, x, y) float32 factors ``new / old`` (each a float32 division, as torchvision's
    ``resize_boxes`` computes them)."""
    f = torch.tensor(new, dtype=torch.float32) / torch.tensor(old, dtype=torch.float32)
    return torch.stack([f[1], f[0], f[1], f[0]]).to(device=like.device, dtype=like.dtype)


class GeneralizedRCNN(nn.Module):
    """Normalise, resize and batch images, run the backbone, propose, run the RoI heads.

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
        objects then cover more cells of a strided feature map (a fixed factor keeps the
        objects' relative sizes).
    min_size : int, tuple of int, or None, default None
        Torchvision's resize policy instead of ``image_scale``: the shorter side is resized to
        ``min_size`` unless the longer one would then exceed ``max_size``
        (:func:`resized_size`). A tuple: training draws one of them per image (from torch's
        random generator), inference uses the last.
    max_size : int or None, default None
        Cap on the longer side with ``min_size``.
    channels_last : bool, default True
        Run the network on channels-last (NHWC) tensors. A FasterRCNN training iteration on 2
        cores took 0.12-0.13 s instead of 0.14-0.17 s (benchmarks/RESULTS.md); a model converted
        from torchvision uses False, torchvision's layout, whose convolutions round alike.

    Images are normalised, then resized, then zero-padded into one batch (torchvision's order);
    targets and proposals are scaled by the new size over the old one, and detections back by
    the old over the new (float32 factors, as torchvision's ``resize_boxes``).

    ``forward(images list of N (3, H_i, W_i) float in [0, 1], targets=None, proposals=None)``
    returns the loss dict in training mode, else N dicts {"boxes", "scores", "labels"}.
    Targets are dicts {"boxes" (G, 4) float, "labels" (G,) int64 0-based}.
    """

    def __init__(self, backbone, rpn, roi_heads, *, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
                 size_divisible=32, image_scale=1.0, min_size=None, max_size=None, channels_last=True):
        super().__init__()
        if not image_scale > 0:
            raise ValueError(f"image_scale must be > 0, got {image_scale!r}")
        if min_size is not None and image_scale != 1.0:
            raise ValueError("give image_scale or min_size (and max_size), not both")
        sizes = (min_size,) if isinstance(min_size, int) else min_size
        if sizes is not None and (not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes)):
            raise ValueError(f"min_size must be None, an int >= 1 or a tuple of them, got {min_size!r}")
        if max_size is not None and (min_size is None or not isinstance(max_size, int) or max_size < 1):
            raise ValueError(f"max_size must be None or an int >= 1 given with min_size, got {max_size!r}")
        self.image_scale = float(image_scale)
        self.min_size = None if sizes is None else tuple(sizes)
        self.max_size = max_size
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.size_divisible = int(size_divisible)

    def _target_size(self, h, w):
        min_size = None
        if self.min_size is not None:
            if self.training and len(self.min_size) > 1:
                min_size = self.min_size[int(torch.randint(len(self.min_size), ()))]
            else:
                min_size = self.min_size[-1]
        return resized_size(h, w, self.image_scale, min_size, self.max_size)

    def preprocess(self, images, targets=None, proposals=None):
        """Normalised, resized, padded batch (an :class:`~pydetect.models.image_list.ImageList`),
        the targets and proposals in its pixels, and the images' original (H_i, W_i)."""
        originals = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        out = []
        targets = None if targets is None else list(targets)
        proposals = None if proposals is None else list(proposals)
        for i, (im, (h, w)) in enumerate(zip(images, originals)):
            im = normalize_images(im, self.image_mean, self.image_std)
            size = self._target_size(h, w)
            if size != (h, w):
                im = nn.functional.interpolate(im[None], size=size, mode="bilinear", align_corners=False)[0]
                if targets is not None:
                    b = targets[i]["boxes"]
                    targets[i] = dict(targets[i], boxes=b * _size_ratios(size, (h, w), b))
                if proposals is not None and proposals[i] is not None:
                    proposals[i] = proposals[i] * _size_ratios(size, (h, w), proposals[i])
            out.append(im)
        batch = pad_images(out, self.size_divisible)
        if self.channels_last:
            batch = batch._replace(tensor=batch.tensor.contiguous(memory_format=torch.channels_last))
        return batch, targets, proposals, originals

    def postprocess(self, detections, sizes, originals):
        """Detections mapped from the resized images' pixels back to the originals'."""
        out = []
        for d, size, orig in zip(detections, sizes, originals):
            if tuple(size) != tuple(orig):
                d = dict(d, boxes=d["boxes"] * _size_ratios(orig, size, d["boxes"]))
            out.append(d)
        return out

    def forward(self, images, targets=None, proposals=None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        (x, sizes), targets, proposals, originals = self.preprocess(images, targets, proposals)
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
        return self.postprocess(detections, sizes, originals)
