"""YOLO networks: the grid formulation of YOLOv1 and the anchor-prior form of YOLOv2/v3.

Glossary of shape letters (as in :mod:`pydetect.models.dense`): N images; S_y, S_x the grid
(cells of ``stride`` pixels); B box predictors per cell (YOLOv1); A anchors per cell of a
level; P priors of one image; K classes; G ground-truth boxes of one image; M cells or
priors that hold an object.

References: J. Redmon, S. Divvala, R. Girshick, A. Farhadi, "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016 (YOLOv1); J. Redmon, A. Farhadi, "YOLO9000: Better,
Faster, Stronger", CVPR 2017 (anchor priors, sigmoid offsets, dimension clusters);
"YOLOv3: An Incremental Improvement", arXiv 1804.02767, 2018 (three output strides, the
best anchor per object, objectness ignored above IoU 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pydetect import ops
from pydetect.models.dense import DenseDetector, flatten_levels, grid_priors, select_detections
from pydetect.models.kmeans import shape_iou

__all__ = ["YOLOv1Net", "YOLONet", "yolov1_targets", "yolov1_loss", "yolo_assign", "paired_iou"]


def paired_iou(a, b):
    """IoU of a[i] with b[i]: (M, 4), (M, 4) xyxy -> (M,); 0 where the union is empty."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _head(cin, cout, hidden=None):
    hidden = hidden or cin
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, cout, 1))


# ----------------------------------------------------------------------------- YOLOv1
def yolov1_targets(boxes, labels, stride, grid):
    """The cells responsible for the objects of one image (YOLOv1: the cell holding the
    object's centre).

    A cell holds one object (its class probabilities are per cell): where several centres
    fall in one cell the largest object keeps it, as in the paper's formulation.

    Returns
    -------
    cells : (M,) int64, row-major index ``i * S_x + j`` of each object cell
    boxes, labels : the (M, 4) boxes and (M,) labels of the objects they hold
    """
    sy, sx = grid
    if boxes.shape[0] == 0:
        return boxes.new_zeros(0, dtype=torch.int64), boxes, labels
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    j = (cx / stride).floor().long().clamp(0, sx - 1)
    i = (cy / stride).floor().long().clamp(0, sy - 1)
    cell = i * sx + j
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # Sort by cell, then by decreasing area (stable, so equal areas keep their order); the
    # first entry of each cell is its object.
    order = torch.argsort(area, descending=True, stable=True)
    order = order[torch.argsort(cell[order], stable=True)]
    sorted_cells = cell[order]
    first = torch.ones_like(sorted_cells, dtype=torch.bool)
    first[1:] = sorted_cells[1:] != sorted_cells[:-1]
    keep = order[first]
    return cell[keep], boxes[keep], labels[keep]


def _decode_v1(pred, stride, size_norm):
    """(..., B, 5) raw predictions (x, y logits; sqrt w, sqrt h; confidence logit) of cells
    whose top-left corners are given separately -> offsets and sizes."""
    xy = torch.sigmoid(pred[..., 0:2])
    wh = pred[..., 2:4].clamp(min=0) ** 2 * size_norm
    conf = torch.sigmoid(pred[..., 4])
    return xy, wh, conf


def yolov1_loss(pred, targets, stride, size_norm, num_classes, lambda_coord=5.0, lambda_noobj=0.5):
    """YOLOv1's sum-squared-error loss, summed over the batch and divided by N.

    Parameters
    ----------
    pred : (N, S_y, S_x, 5 B + K)
        Per cell: B predictors of (x, y, sqrt w, sqrt h, confidence) then K class scores;
        x, y and the confidence are logits (sigmoid), the class scores go through a softmax.
    targets : list of N dicts {"boxes" (G, 4), "labels" (G,)}
    stride : float
        Cell side in pixels.
    size_norm : float
        Widths and heights are predicted as sqrt(w / size_norm) (the paper's size_norm is the
        image side; a constant keeps the targets independent of the image size).

    Returns
    -------
    dict of "loss_coord" (lambda_coord times the squared errors of x, y, sqrt w, sqrt h of the
    responsible predictors), "loss_conf" (their confidence against the IoU of their box with
    the object), "loss_noobj" (lambda_noobj times the squared confidence of every other
    predictor) and "loss_class" (squared error of the class probabilities of the object cells).
    """
    n, sy, sx, _ = pred.shape
    b = (pred.shape[-1] - num_classes) // 5
    boxes_pred = pred[..., :5 * b].reshape(n, sy * sx, b, 5)
    probs = torch.softmax(pred[..., 5 * b:].reshape(n, sy * sx, num_classes), -1)
    xy, wh, conf = _decode_v1(boxes_pred, stride, size_norm)
    responsible = torch.zeros(n, sy * sx, b, dtype=torch.bool, device=pred.device)
    coord = pred.new_zeros(())
    conf_loss = pred.new_zeros(())
    class_loss = pred.new_zeros(())
    for k, t in enumerate(targets):
        cells, gt, lab = yolov1_targets(t["boxes"].to(pred.dtype), t["labels"], stride, (sy, sx))
        if cells.numel() == 0:
            continue
        corner = torch.stack([(cells % sx).to(pred.dtype), (cells // sx).to(pred.dtype)], 1) * stride  # (M, 2)
        cxy = corner[:, None, :] + xy[k, cells] * stride                       # (M, B, 2)
        pw = wh[k, cells]
        pboxes = torch.cat([cxy - pw / 2, cxy + pw / 2], -1)                   # (M, B, 4)
        m = cells.numel()
        iou = paired_iou(pboxes.detach().reshape(-1, 4), gt[:, None, :].expand(m, b, 4).reshape(-1, 4)).reshape(m, b)
        r = iou.argmax(1)  # the responsible predictor: the one whose box overlaps the object most (ties: first)
        responsible[k, cells, r] = True
        rows = torch.arange(m, device=pred.device)
        gxy = ((gt[:, :2] + gt[:, 2:]) / 2 - corner) / stride
        gwh = ((gt[:, 2:] - gt[:, :2]) / size_norm).sqrt()
        coord = coord + ((xy[k, cells, r] - gxy) ** 2).sum() + \
            ((boxes_pred[k, cells, r, 2:4] - gwh) ** 2).sum()
        conf_loss = conf_loss + ((conf[k, cells, r] - iou[rows, r]) ** 2).sum()
        class_loss = class_loss + ((probs[k, cells] - F.one_hot(lab, num_classes).to(pred.dtype)) ** 2).sum()
    noobj = (conf[~responsible] ** 2).sum()
    return {"loss_coord": lambda_coord * coord / n, "loss_conf": conf_loss / n,
            "loss_noobj": lambda_noobj * noobj / n, "loss_class": class_loss / n}


class YOLOv1Net(DenseDetector):
    """YOLOv1: one S_y x S_x grid (the level of ``stride``), B box predictors and one set of
    class probabilities per cell.

    Parameters
    ----------
    backbone : module with ``out_channels`` and ``stride``
    num_classes : int
    stride : int
        Cell side in pixels (the backbone's stride or that times a power of two).
    predictors : int, default 2
        B.
    size_norm : float
        See :func:`yolov1_loss`.
    lambda_coord, lambda_noobj : float, default 5, 0.5
    score_thresh, nms_thresh, detections_per_img : inference settings (class-specific
        confidence ``confidence * P(class)``, per-class NMS).
    """

    def __init__(self, backbone, num_classes, stride, *, predictors=2, size_norm=64.0, lambda_coord=5.0,
                 lambda_noobj=0.5, score_thresh=0.01, nms_thresh=0.5, detections_per_img=100):
        super().__init__(backbone, (stride,))
        self.num_classes = int(num_classes)
        self.predictors = int(predictors)
        self.size_norm = float(size_norm)
        self.lambda_coord, self.lambda_noobj = float(lambda_coord), float(lambda_noobj)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.head_net = _head(self.level_channels[0], 5 * self.predictors + self.num_classes)
        with torch.no_grad():  # confidences start near 0.12, not 0.5: most predictors hold no object
            self.head_net[-1].bias[:5 * self.predictors].view(self.predictors, 5)[:, 4].fill_(-2.0)
        self.to_channels_last()

    def head(self, feats):
        return self.head_net(feats[0]).permute(0, 2, 3, 1)  # (N, S_y, S_x, 5 B + K)

    def loss(self, pred, feats, targets, sizes, padded):
        return yolov1_loss(pred, targets, self.strides[0], self.size_norm, self.num_classes,
                           self.lambda_coord, self.lambda_noobj)

    def postprocess(self, pred, feats, sizes):
        n, sy, sx, _ = pred.shape
        b, k, s = self.predictors, self.num_classes, self.strides[0]
        boxes_pred = pred[..., :5 * b].reshape(n, sy * sx, b, 5)
        probs = torch.softmax(pred[..., 5 * b:].reshape(n, sy * sx, k), -1)
        xy, wh, conf = _decode_v1(boxes_pred, s, self.size_norm)
        cell = torch.arange(sy * sx, device=pred.device)
        corner = torch.stack([cell % sx, cell // sx], 1).to(pred.dtype) * s
        cxy = corner[None, :, None, :] + xy * s
        boxes = torch.cat([cxy - wh / 2, cxy + wh / 2], -1).reshape(n, -1, 4)   # (N, S B, 4)
        scores = (conf[..., None] * probs[:, :, None, :]).reshape(n, -1, k)     # (N, S B, K)
        return [select_detections(boxes[i], scores[i], sizes[i], self.score_thresh, self.nms_thresh,
                        self.detections_per_img) for i in range(n)]


# ----------------------------------------------------------------------------- anchors
def yolo_assign(boxes, anchor_shapes, anchor_level, level_strides, level_sizes, level_offsets, anchors_per_level,
                assign_iou=None):
    """The priors responsible for the objects of one image (YOLOv3): for each object, the
    anchor whose shape (centred) overlaps its box most, at the cell of that anchor's level
    holding the object's centre; with ``assign_iou``, also every other anchor whose shape
    IoU reaches it (YOLOv4's rule). A prior claimed by several objects keeps the one whose
    shape fits it best.

    Parameters
    ----------
    boxes : (G, 4)
    anchor_shapes : (A_all, 2) every level's anchors, level by level
    anchor_level : (A_all,) int64, the level of each anchor
    level_strides, level_sizes, level_offsets, anchors_per_level : per level: the stride,
        (H_l, W_l), index of its first prior in the flat order, and A_l

    Returns
    -------
    prior : (M,) int64 flat prior indices; obj : (M,) int64 the object of each
    """
    dev = boxes.device
    if boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return empty, empty
    wh = boxes[:, 2:] - boxes[:, :2]
    siou = shape_iou(wh.detach(), anchor_shapes.to(wh.dtype))  # (G, A_all)
    chosen = torch.zeros_like(siou, dtype=torch.bool)
    chosen[torch.arange(len(wh), device=dev), siou.argmax(1)] = True
    if assign_iou is not None:
        chosen |= siou >= assign_iou
    g, a = chosen.nonzero(as_tuple=True)
    lvl = anchor_level[a]
    strides = torch.as_tensor(level_strides, dtype=boxes.dtype, device=dev)[lvl]
    hs = torch.as_tensor([s[0] for s in level_sizes], device=dev)[lvl]
    ws = torch.as_tensor([s[1] for s in level_sizes], device=dev)[lvl]
    first_anchor = torch.as_tensor(anchors_per_level, device=dev).cumsum(0) - torch.as_tensor(anchors_per_level,
                                                                                             device=dev)
    cx = (boxes[g, 0] + boxes[g, 2]) / 2
    cy = (boxes[g, 1] + boxes[g, 3]) / 2
    j = torch.minimum((cx / strides).floor().long().clamp(min=0), ws - 1)
    i = torch.minimum((cy / strides).floor().long().clamp(min=0), hs - 1)
    n_a = torch.as_tensor(anchors_per_level, device=dev)[lvl]
    prior = torch.as_tensor(level_offsets, device=dev)[lvl] + (i * ws + j) * n_a + (a - first_anchor[lvl])
    fit = siou[g, a]
    order = torch.argsort(fit, descending=True, stable=True)
    order = order[torch.argsort(prior[order], stable=True)]
    sp = prior[order]
    first = torch.ones_like(sp, dtype=torch.bool)
    first[1:] = sp[1:] != sp[:-1]
    keep = order[first]
    return prior[keep], g[keep]


class YOLONet(DenseDetector):
    """YOLO with anchor priors (YOLOv2/v3): at each cell of each level, for each of the
    level's anchors, box offsets (t_x, t_y, t_w, t_h), an objectness logit and K class logits.

    A prior at cell (i, j) of stride s with anchor (a_w, a_h) predicts the box centred at
    ``((j + sigmoid(t_x)) s, (i + sigmoid(t_y)) s)`` of size ``(a_w exp(t_w), a_h exp(t_h))``.

    Parameters
    ----------
    backbone : module with ``out_channels`` and ``stride``
    num_classes : int
    anchors : sequence of L arrays (A_l, 2)
        (w, h) of each level's anchors, in input pixels, finest level first.
    strides : tuple of L int
    assign_iou : float or None
        See :func:`yolo_assign`.
    ignore_iou : float, default 0.5
        A prior that is not responsible for an object but whose box overlaps one by more
        than this is left out of the objectness loss (YOLOv3).
    score_thresh, nms_thresh, detections_per_img : inference (score ``sigmoid(objectness) *
        softmax(class)``, per-class NMS).

    The loss (divided by the number of responsible priors in the batch): binary cross-entropy
    of sigmoid(t_x), sigmoid(t_y) against the centre's position in its cell and squared error
    of t_w, t_h against log(w / a_w), log(h / a_h) ("loss_box"); binary cross-entropy of the
    objectness ("loss_obj"); cross-entropy of the class logits ("loss_class").
    """

    def __init__(self, backbone, num_classes, anchors, strides, *, assign_iou=None, ignore_iou=0.5,
                 score_thresh=0.01, nms_thresh=0.5, detections_per_img=100, pre_nms_top_n=1000):
        super().__init__(backbone, strides)
        if len(anchors) != len(self.strides):
            raise ValueError(f"give one anchor set per stride: {len(anchors)} sets for {len(self.strides)} strides")
        self.num_classes = int(num_classes)
        shapes = [torch.as_tensor(a, dtype=torch.float32).reshape(-1, 2) for a in anchors]
        self.anchors_per_level = [len(a) for a in shapes]
        self.register_buffer("anchor_shapes", torch.cat(shapes), persistent=False)
        self.register_buffer("anchor_level", torch.cat([torch.full((len(a),), i, dtype=torch.int64)
                                                        for i, a in enumerate(shapes)]), persistent=False)
        self.assign_iou = assign_iou
        self.ignore_iou = float(ignore_iou)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img, self.pre_nms_top_n = int(detections_per_img), int(pre_nms_top_n)
        self.values = 5 + self.num_classes
        self.heads = nn.ModuleList(_head(c, a * self.values) for c, a in zip(self.level_channels,
                                                                             self.anchors_per_level))
        prior = -4.59511985  # log(0.01 / 0.99): objectness starts near 1% (RetinaNet's prior init)
        for h, a in zip(self.heads, self.anchors_per_level):
            with torch.no_grad():
                h[-1].bias.view(a, self.values)[:, 4].fill_(prior)
        self.to_channels_last()

    def head(self, feats):
        return [h(f) for h, f in zip(self.heads, feats)]

    def _layout(self, feats):
        """Per level: sizes, offsets of the first prior; and the (P, 4) priors, (P,) strides."""
        sizes = [tuple(f.shape[-2:]) for f in feats]
        counts = [h * w * a for (h, w), a in zip(sizes, self.anchors_per_level)]
        offsets = [sum(counts[:i]) for i in range(len(counts))]
        shapes = torch.split(self.anchor_shapes, self.anchors_per_level)
        priors = torch.cat([grid_priors(sh, s, h, w, feats[0].device)
                            for sh, s, (h, w) in zip(shapes, self.strides, sizes)])
        strides = torch.cat([torch.full((c,), float(s), device=feats[0].device)
                             for c, s in zip(counts, self.strides)])
        return sizes, offsets, priors, strides

    def _decode(self, raw, priors, strides):
        """(N, P, 5 + K) raw outputs -> (N, P, 4) boxes."""
        pc = (priors[:, :2] + priors[:, 2:]) / 2
        pwh = priors[:, 2:] - priors[:, :2]
        corner = pc - strides[:, None] / 2
        cxy = corner + torch.sigmoid(raw[..., 0:2]) * strides[:, None]
        wh = pwh * torch.exp(raw[..., 2:4].clamp(max=8.0))
        return torch.cat([cxy - wh / 2, cxy + wh / 2], -1)

    def loss(self, outputs, feats, targets, sizes, padded):
        raw = flatten_levels(outputs, self.anchors_per_level, self.values)       # (N, P, 5 + K)
        level_sizes, offsets, priors, strides = self._layout(feats)
        with torch.no_grad():
            decoded = self._decode(raw.detach(), priors, strides)
        obj_target = torch.zeros(raw.shape[:2], dtype=raw.dtype, device=raw.device)
        obj_weight = torch.ones_like(obj_target)
        box_loss = raw.new_zeros(())
        class_loss = raw.new_zeros(())
        num_pos = 0
        for k, t in enumerate(targets):
            gt = t["boxes"].to(raw.dtype)
            if gt.shape[0]:
                iou = ops.box_iou(decoded[k], gt)                               # (P, G)
                obj_weight[k] = (iou.max(1).values <= self.ignore_iou).to(raw.dtype)
            p, g = yolo_assign(gt, self.anchor_shapes, self.anchor_level, self.strides, level_sizes, offsets,
                               self.anchors_per_level, self.assign_iou)
            if p.numel() == 0:
                continue
            num_pos += p.numel()
            obj_target[k, p] = 1.0
            obj_weight[k, p] = 1.0
            s = strides[p][:, None]
            pc = (priors[p, :2] + priors[p, 2:]) / 2
            pwh = priors[p, 2:] - priors[p, :2]
            gc = (gt[g, :2] + gt[g, 2:]) / 2
            gwh = gt[g, 2:] - gt[g, :2]
            offset = ((gc - (pc - s / 2)) / s).clamp(0.0, 1.0)
            r = raw[k, p]
            box_loss = box_loss + F.binary_cross_entropy_with_logits(r[:, 0:2], offset, reduction="sum") + \
                ((r[:, 2:4] - torch.log(gwh / pwh)) ** 2).sum()
            class_loss = class_loss + F.cross_entropy(r[:, 5:], t["labels"][g], reduction="sum")
        obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, weight=obj_weight, reduction="sum")
        denom = max(num_pos, 1)
        return {"loss_box": box_loss / denom, "loss_obj": obj / denom, "loss_class": class_loss / denom}

    def postprocess(self, outputs, feats, sizes):
        raw = flatten_levels(outputs, self.anchors_per_level, self.values)
        _, _, priors, strides = self._layout(feats)
        boxes = self._decode(raw, priors, strides)
        scores = torch.sigmoid(raw[..., 4:5]) * torch.softmax(raw[..., 5:], -1)
        return [select_detections(boxes[i], scores[i], sizes[i], self.score_thresh, self.nms_thresh, self.detections_per_img,
                        self.pre_nms_top_n) for i in range(raw.shape[0])]
