"""Region Proposal Network (Ren, He, Girshick, Sun, "Faster R-CNN", NeurIPS 2015).

Glossary of shape letters: N images; L feature levels; C feature channels; A anchors per
location; H_l, W_l level sizes; R = sum_l H_l W_l A anchors per image; P proposals kept per
image; G ground-truth boxes of one image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pydetect import ops
from pydetect.models.box_coder import BoxCoder
from pydetect.models.matching import BalancedSampler, Matcher

__all__ = ["RPNHead", "RegionProposalNetwork", "smooth_l1"]


def smooth_l1(input, target, beta):
    """Sum of the smooth L1 loss (Fast R-CNN eq. 3, with transition point ``beta``)."""
    diff = (input - target).abs()
    return torch.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta).sum()


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs giving A objectness logits and 4 A deltas per location.

    ``forward(features: list of (N, C, H_l, W_l)) -> (logits list of (N, A, H_l, W_l),
    deltas list of (N, 4 A, H_l, W_l))``.
    """

    def __init__(self, in_channels, num_anchors):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features):
        logits, deltas = [], []
        for f in features:
            t = F.relu(self.conv(f))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def _flatten(logits, deltas):
    """(N, R) logits and (N, R, 4) deltas in anchor order (level, row, column, anchor)."""
    flat_l, flat_d = [], []
    for lg, dl in zip(logits, deltas):
        n, a, h, w = lg.shape
        flat_l.append(lg.permute(0, 2, 3, 1).reshape(n, -1))
        flat_d.append(dl.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
    return torch.cat(flat_l, 1), torch.cat(flat_d, 1)


class RegionProposalNetwork(nn.Module):
    """Scores anchors, regresses them to proposals, and (when training) computes its losses.

    Parameters
    ----------
    anchor_generator : AnchorGenerator
    head : RPNHead
    fg_iou_thresh, bg_iou_thresh : float, default 0.7, 0.3
        Anchor matching (plus each object's best anchor).
    batch_size_per_image, positive_fraction : int, float, default 256, 0.5
        Anchors sampled per image for the losses.
    pre_nms_top_n, post_nms_top_n : dict {"training": int, "testing": int}
        Proposals kept per level before NMS, and per image after it.
    nms_thresh : float, default 0.7
    score_thresh : float, default 0.0
        Minimum objectness probability of a proposal.
    min_size : float, default 1e-3
        Proposals narrower or shorter than this (pixels) are dropped.

    ``forward(image_shape, image_sizes, features, targets=None) -> (proposals list of N (P, 4),
    losses dict)``; ``image_shape`` is the padded batch (H, W), ``image_sizes`` the true sizes.
    Losses (training only): ``loss_objectness`` (binary cross-entropy over the sampled anchors)
    and ``loss_rpn_box_reg`` (smooth L1, beta 1/9, over positives, divided by the sample count).
    """

    def __init__(self, anchor_generator, head, *, fg_iou_thresh=0.7, bg_iou_thresh=0.3,
                 batch_size_per_image=256, positive_fraction=0.5, pre_nms_top_n=None,
                 post_nms_top_n=None, nms_thresh=0.7, score_thresh=0.0, min_size=1e-3):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = pre_nms_top_n or {"training": 2000, "testing": 1000}
        self.post_nms_top_n = post_nms_top_n or {"training": 2000, "testing": 1000}
        self.nms_thresh = float(nms_thresh)
        self.score_thresh = float(score_thresh)
        self.min_size = float(min_size)
        self.generator = None  # optional torch.Generator for reproducible sampling

    def _mode(self):
        return "training" if self.training else "testing"

    def filter_proposals(self, proposals, logits, image_sizes, level_sizes):
        """Top-k per level, clip, drop tiny/low-score, NMS per level, keep post_nms_top_n."""
        pre_n, post_n = self.pre_nms_top_n[self._mode()], self.post_nms_top_n[self._mode()]
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=logits.device)
                            for i, n in enumerate(level_sizes)])
        # Top-k of each level for the whole batch at once (torchvision's order of equal scores).
        logits = logits.detach()
        top, start = [], 0
        for lv_logits in logits.split(level_sizes, 1):
            top.append(lv_logits.topk(min(pre_n, lv_logits.shape[1]), dim=1).indices + start)
            start += lv_logits.shape[1]
        top = torch.cat(top, 1)
        out = []
        for boxes, scores, idx, (h, w) in zip(proposals, logits, top, image_sizes):
            boxes, scores, lv = boxes[idx], torch.sigmoid(scores[idx]), levels[idx]
            boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                 boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
            ok = ((boxes[:, 2] - boxes[:, 0]) >= self.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_size)
            ok &= scores >= self.score_thresh
            boxes, scores, lv = boxes[ok], scores[ok], lv[ok]
            keep = ops.batched_nms(boxes, scores, lv, self.nms_thresh)[:post_n]
            out.append(boxes[keep])
        return out

    def assign_targets(self, anchors, targets):
        """Per image: labels (R,) float (1 fg, 0 bg, -1 ignored) and matched boxes (R, 4)."""
        labels, matched = [], []
        for t in targets:
            gt = t["boxes"]
            m = self.matcher(gt, anchors)
            lab = (m >= 0).to(torch.float32)
            lab[m == Matcher.BETWEEN] = -1.0
            labels.append(lab)
            matched.append(gt[m.clamp(min=0)] if gt.numel() else torch.zeros_like(anchors))
        return labels, matched

    def forward(self, image_shape, image_sizes, features, targets=None):
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(image_shape, features)
        level_sizes = [lg.shape[1] * lg.shape[2] * lg.shape[3] for lg in logits]
        logits, deltas = _flatten(logits, deltas)
        n = logits.shape[0]
        proposals = self.box_coder.decode(deltas.detach().reshape(-1, 4), anchors.repeat(n, 1))
        proposals = proposals.reshape(n, -1, 4)
        boxes = self.filter_proposals(proposals, logits, image_sizes, level_sizes)
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            labels, matched = self.assign_targets(anchors, targets)
            pos, neg = zip(*(self.sampler(lab.to(torch.int64), self.generator) for lab in labels))
            pos, neg = torch.stack(pos), torch.stack(neg)
            sampled = pos | neg
            labels = torch.stack(labels)
            target_deltas = torch.stack([self.box_coder.encode(m, anchors) for m in matched])
            num = max(int(sampled.sum()), 1)
            losses["loss_objectness"] = F.binary_cross_entropy_with_logits(
                logits[sampled], labels[sampled], reduction="sum") / num
            losses["loss_rpn_box_reg"] = smooth_l1(deltas[pos], target_deltas[pos], 1.0 / 9) / num
        return boxes, losses
