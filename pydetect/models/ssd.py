"""SSD: default boxes on several feature maps, one 3x3 conv predictor per map.

Glossary of shape letters (as in :mod:`pydetect.models.dense`): N images; L levels; A_l
default boxes per cell of level l; P default boxes of one image; K classes (the classifier
has K + 1 outputs, 0 the background); G ground-truth boxes of one image.

Reference: W. Liu, D. Anguelov, D. Erhan, C. Szegedy, S. Reed, C.-Y. Fu, A. C. Berg, "SSD:
Single Shot MultiBox Detector", ECCV 2016: default box scales and aspect ratios (eq. 4),
matching (best default box per object, then every box with IoU >= 0.5), hard negative mining
at 3:1, smooth L1 + softmax cross-entropy, per-class NMS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pydetect import ops
from pydetect.models.box_coder import BoxCoder
from pydetect.models.dense import DenseDetector, flatten_levels, grid_priors, select_detections
from pydetect.models.rpn import smooth_l1

__all__ = ["SSDNet", "default_box_shapes", "ssd_match", "ssd_loss"]

#: SSD's "variances" (0.1, 0.1, 0.2, 0.2) as the box coder's weights (their inverses).
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def default_box_shapes(scales, aspect_ratios):
    """SSD's default boxes (eq. 4) as (w, h) per level.

    Level l of scale s_l gets, for each aspect ratio r (h / w here; the paper's a_r is w / h,
    and the set {1, 2, 1/2, ...} is the same), the box ``(s_l / sqrt(r), s_l sqrt(r))``, plus
    a square of side ``sqrt(s_l s_{l+1})`` (the last level uses ``s_l`` times the ratio of its
    two neighbours' scales). Ratios are taken with their inverses and 1.

    Parameters
    ----------
    scales : sequence of L positive floats (pixels), finest first
    aspect_ratios : sequence of floats > 0, e.g. (2,) for {1, 2, 1/2}

    Returns
    -------
    list of L (A, 2) float tensors
    """
    ratios = {1.0}
    for r in aspect_ratios:
        ratios.update({float(r), 1.0 / float(r)})
    ratios = sorted(ratios)
    shapes = []
    for i, s in enumerate(scales):
        nxt = scales[i + 1] if i + 1 < len(scales) else s * (s / scales[i - 1] if i else 1.5)
        level = [(s / math.sqrt(r), s * math.sqrt(r)) for r in ratios] + [(math.sqrt(s * nxt),) * 2]
        shapes.append(torch.tensor(level, dtype=torch.float32))
    return shapes


def ssd_match(gt, priors, iou_thresh=0.5):
    """The object each default box is matched to, or -1 (background).

    Each object first takes the default box that overlaps it most (whatever the IoU), then
    each remaining default box takes the object it overlaps most if their IoU reaches
    ``iou_thresh``.

    Returns (P,) int64.
    """
    p = priors.shape[0]
    matches = torch.full((p,), -1, dtype=torch.int64, device=priors.device)
    if gt.shape[0] == 0:
        return matches
    iou = ops.box_iou(gt, priors)                                 # (G, P)
    best_iou, best_gt = iou.max(0)
    matches[best_iou >= iou_thresh] = best_gt[best_iou >= iou_thresh]
    # Forced matches last, so that they win; objects sharing a best box: the later one wins.
    for g, best in enumerate(iou.argmax(1).tolist()):
        matches[best] = g
    return matches


def ssd_loss(cls_logits, deltas, priors, targets, coder, iou_thresh=0.5, neg_pos_ratio=3, alpha=1.0):
    """SSD's loss: (L_conf + alpha L_loc) / (matched default boxes in the batch).

    L_loc: smooth L1 (beta 1) of the matched boxes' encoded offsets. L_conf: softmax
    cross-entropy of the matched boxes (their object's class) and of the ``neg_pos_ratio``
    times as many unmatched boxes of the same image with the highest background loss (hard
    negative mining).

    Parameters
    ----------
    cls_logits : (N, P, K + 1); deltas : (N, P, 4); priors : (P, 4)
    targets : list of N dicts {"boxes" (G, 4), "labels" (G,) 0-based}
    """
    labels = torch.zeros(cls_logits.shape[:2], dtype=torch.int64, device=cls_logits.device)
    # Zero times every offset: the box predictors stay in the graph when a batch has no object
    # (DistributedDataParallel expects a gradient for every parameter at every step).
    loc = deltas.sum() * 0.0
    num_pos = 0
    for k, t in enumerate(targets):
        gt = t["boxes"].to(priors.dtype)
        m = ssd_match(gt, priors, iou_thresh)
        pos = m >= 0
        if pos.any():
            labels[k, pos] = t["labels"][m[pos]] + 1
            target_deltas = coder.encode(gt[m[pos]], priors[pos])
            loc = loc + smooth_l1(deltas[k, pos], target_deltas, 1.0)
            num_pos += int(pos.sum())
    ce = F.cross_entropy(cls_logits.reshape(-1, cls_logits.shape[-1]), labels.reshape(-1),
                         reduction="none").reshape(labels.shape)
    pos = labels > 0
    with torch.no_grad():
        neg_loss = ce.detach().clone()
        neg_loss[pos] = -1.0
        # The rank of each box by background loss within its image; a box is a hard negative
        # if its rank is below neg_pos_ratio times its image's positives (at least one each).
        order = neg_loss.argsort(1, descending=True)
        rank = order.argsort(1)
        quota = (pos.sum(1, keepdim=True) * neg_pos_ratio).clamp(min=neg_pos_ratio)
        hard = (rank < quota) & ~pos
    conf = ce[pos | hard].sum()
    denom = max(num_pos, 1)
    return {"loss_class": conf / denom, "loss_box": alpha * loc / denom}


class SSDNet(DenseDetector):
    """SSD over the levels of ``strides``: per level, a 3x3 conv predicting K + 1 class
    scores and 4 box offsets (:class:`pydetect.models.BoxCoder` with SSD's variances) for
    each of the level's default boxes.

    Parameters
    ----------
    backbone : module with ``out_channels`` and ``stride``
    num_classes : int
    shapes : sequence of L (A_l, 2) arrays: the (w, h) of each level's default boxes
    strides : tuple of L int
    iou_thresh, neg_pos_ratio, alpha : matching and loss (:func:`ssd_loss`)
    score_thresh, nms_thresh, detections_per_img, pre_nms_top_n : inference
    """

    def __init__(self, backbone, num_classes, shapes, strides, *, iou_thresh=0.5, neg_pos_ratio=3, alpha=1.0,
                 score_thresh=0.01, nms_thresh=0.45, detections_per_img=100, pre_nms_top_n=1000):
        super().__init__(backbone, strides)
        if len(shapes) != len(self.strides):
            raise ValueError(f"give one default box set per stride: {len(shapes)} for {len(self.strides)} strides")
        self.num_classes = int(num_classes)
        shapes = [torch.as_tensor(a, dtype=torch.float32).reshape(-1, 2) for a in shapes]
        self.boxes_per_level = [len(a) for a in shapes]
        self.register_buffer("box_shapes", torch.cat(shapes), persistent=False)
        self.iou_thresh, self.neg_pos_ratio, self.alpha = float(iou_thresh), int(neg_pos_ratio), float(alpha)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img, self.pre_nms_top_n = int(detections_per_img), int(pre_nms_top_n)
        self.coder = BoxCoder(BOX_WEIGHTS)
        self.cls_heads = nn.ModuleList(nn.Conv2d(c, a * (self.num_classes + 1), 3, 1, 1)
                                       for c, a in zip(self.level_channels, self.boxes_per_level))
        self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1)
                                       for c, a in zip(self.level_channels, self.boxes_per_level))
        self.to_channels_last()

    def head(self, feats):
        return ([h(f) for h, f in zip(self.cls_heads, feats)], [h(f) for h, f in zip(self.box_heads, feats)])

    def priors(self, feats):
        shapes = torch.split(self.box_shapes, self.boxes_per_level)
        return torch.cat([grid_priors(sh, s, f.shape[-2], f.shape[-1], f.device)
                          for sh, s, f in zip(shapes, self.strides, feats)])

    def _flat(self, outputs):
        cls, box = outputs
        return (flatten_levels(cls, self.boxes_per_level, self.num_classes + 1),
                flatten_levels(box, self.boxes_per_level, 4))

    def loss(self, outputs, feats, targets, sizes, padded):
        cls, deltas = self._flat(outputs)
        return ssd_loss(cls, deltas, self.priors(feats), targets, self.coder, self.iou_thresh,
                        self.neg_pos_ratio, self.alpha)

    def postprocess(self, outputs, feats, sizes):
        cls, deltas = self._flat(outputs)
        priors = self.priors(feats)
        probs = torch.softmax(cls, -1)[..., 1:]
        out = []
        for i in range(cls.shape[0]):
            boxes = self.coder.decode(deltas[i], priors)
            out.append(select_detections(boxes, probs[i], sizes[i], self.score_thresh, self.nms_thresh,
                               self.detections_per_img, self.pre_nms_top_n))
        return out
