"""Matching boxes to ground truth, and balanced sampling of the matches.

Glossary of shape letters: G ground-truth boxes of one image; R candidate boxes (anchors or
proposals) of that image.

Used by the RPN (anchors, Ren et al. 2015: IoU >= 0.7 foreground, < 0.3 background, plus
each ground truth's best anchor) and by the RoI heads (proposals, Girshick 2015: IoU >= 0.5
foreground, [0.1 or 0, 0.5) background).
"""

from __future__ import annotations

import torch

from pydetect import ops

__all__ = ["Matcher", "BalancedSampler"]


class Matcher:
    """Assigns each of R boxes the ground truth it overlaps most, or a negative code.

    Parameters
    ----------
    high_threshold : float
        IoU at or above which a box is matched (foreground).
    low_threshold : float
        IoU below which a box is background (``BELOW_LOW``). In between it is ``BETWEEN``
        (ignored in the losses).
    allow_low_quality_matches : bool, default False
        Also match, for each ground truth, the boxes with its highest IoU (ties included),
        so that every object has at least one positive (Faster R-CNN's second rule).

    Call: ``matcher(gt_boxes (G, 4), boxes (R, 4)) -> matches (R,) int64`` with values in
    ``[0, G)`` or ``BELOW_LOW`` (-1) / ``BETWEEN`` (-2). ``G == 0`` gives all ``BELOW_LOW``.
    """

    BELOW_LOW = -1
    BETWEEN = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        if not 0 <= low_threshold <= high_threshold <= 1:
            raise ValueError("need 0 <= low_threshold <= high_threshold <= 1, got "
                             f"{low_threshold}, {high_threshold}")
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, gt_boxes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        r = boxes.shape[0]
        if gt_boxes.shape[0] == 0:
            return torch.full((r,), self.BELOW_LOW, dtype=torch.int64, device=boxes.device)
        if r == 0:
            return torch.zeros(0, dtype=torch.int64, device=boxes.device)
        iou = ops.box_iou(gt_boxes.detach().float(), boxes.detach().float())  # (G, R)
        iou = torch.nan_to_num(iou, nan=0.0)
        best, matches = iou.max(dim=0)
        original = matches.clone()
        matches[best < self.high_threshold] = self.BETWEEN
        matches[best < self.low_threshold] = self.BELOW_LOW
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            _, cols = torch.nonzero((iou == best_per_gt) & (best_per_gt > 0), as_tuple=True)
            matches[cols] = original[cols]
        return matches


class BalancedSampler:
    """Draws at most ``batch_size_per_image`` boxes with a fixed fraction of positives.

    Parameters
    ----------
    batch_size_per_image : int
        Boxes sampled per image (256 for the RPN, 128 or 512 for the RoI heads in the papers).
    positive_fraction : float
        Largest share of positives; negatives fill the rest (0.5 RPN, 0.25 RoI heads).

    Call: ``sampler(labels (R,) int64, generator=None, groups=None) -> (positive (R,) bool,
    negative (R,) bool)`` where labels are ``>= 1`` positive, ``0`` negative, ``-1`` ignored.
    With ``groups`` (R,) int64 (e.g. the matched object of each box), positives are drawn
    with probability inversely proportional to the size of their group, so that every
    group is expected to get the same share whatever its number of boxes.
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        if int(batch_size_per_image) < 1:
            raise ValueError(f"batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if not 0 < positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    def __call__(self, labels: torch.Tensor, generator=None, groups=None):
        pos = torch.nonzero(labels >= 1).squeeze(1)
        neg = torch.nonzero(labels == 0).squeeze(1)
        num_pos = min(int(self.batch_size_per_image * self.positive_fraction), pos.numel())
        num_neg = min(self.batch_size_per_image - num_pos, neg.numel())
        # The draws run on the CPU (torch's CPU generator, or ``generator``), whatever the
        # labels' device: a GPU run samples as a CPU run does; the indices then index the
        # labels' device.
        if groups is not None and 0 < num_pos < pos.numel():
            g = groups[pos]
            _, inverse, counts = torch.unique(g, return_inverse=True, return_counts=True)
            weights = 1.0 / counts[inverse].to(device="cpu", dtype=torch.float64)
            pos = pos[torch.multinomial(weights, num_pos, replacement=False, generator=generator)]
        else:
            pos = pos[torch.randperm(pos.numel(), generator=generator, device="cpu")[:num_pos]]
        neg = neg[torch.randperm(neg.numel(), generator=generator, device="cpu")[:num_neg]]
        pos_mask = torch.zeros_like(labels, dtype=torch.bool)
        neg_mask = torch.zeros_like(labels, dtype=torch.bool)
        pos_mask[pos] = True
        neg_mask[neg] = True
        return pos_mask, neg_mask
