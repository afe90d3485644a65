"""RoI heads of Fast / Faster R-CNN: box head, classifier, box regressor, losses, inference.

Glossary of shape letters: N images; C feature channels; R RoIs of one image (sampled when
training); K object classes, class 0 being background in the heads' outputs (K + 1 scores,
4 (K + 1) deltas); G ground-truth boxes of one image; S = PH PW pooled bins.

References: R. Girshick, "Fast R-CNN", ICCV 2015 (multi-task loss, eq. 1-3; minibatch of
R RoIs with 25% foreground, IoU >= 0.5 foreground, [0.1, 0.5) background).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pydetect import ops
from pydetect.models.box_coder import BoxCoder
from pydetect.models.matching import BalancedSampler, Matcher
from pydetect.models.rpn import smooth_l1

__all__ = ["TwoMLPHead", "FastRCNNPredictor", "RoIHeads", "fastrcnn_loss", "RoIPooler"]


class TwoMLPHead(nn.Module):
    """Flatten, then two fully connected layers with ReLU: (R, C, PH, PW) -> (R, D).

    With ``pooled_branch=True`` the output also carries the RoI's average-pooled features:
    (R, D + C). A predictor can then start from a classifier trained on average-pooled
    crop features (see :meth:`FastRCNNPredictor.init_from_crop_classifier`).
    """

    def __init__(self, in_features, representation_size=256, dropout=0.0, pooled_branch=False):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.pooled_branch = bool(pooled_branch)

    def forward(self, x):
        y = self.dropout(F.relu(self.fc6(x.flatten(1))))
        y = self.dropout(F.relu(self.fc7(y)))
        if self.pooled_branch:
            y = torch.cat([y, x.mean((2, 3))], 1)
        return y


class FastRCNNPredictor(nn.Module):
    """Class logits (R, K + 1) and class-specific deltas (R, 4 (K + 1)) from (R, D)."""

    def __init__(self, in_features, num_classes_with_background):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes_with_background)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes_with_background)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)

    def init_from_crop_classifier(self, fc: nn.Linear):
        """Starts the class scores as a crop classifier on the last ``fc.in_features`` inputs.

        ``fc`` maps average-pooled backbone features to (K + 1) scores, background first
        (:class:`pydetect.models.CropClassifier`); the other inputs start with zero weight.
        """
        k1, c = fc.weight.shape
        if k1 != self.cls_score.out_features or c > self.cls_score.in_features:
            raise ValueError(f"crop classifier {tuple(fc.weight.shape)} does not fit {self.cls_score}")
        with torch.no_grad():
            self.cls_score.weight.zero_()
            self.cls_score.weight[:, -c:] = fc.weight
            self.cls_score.bias.copy_(fc.bias)


class RoIPooler(nn.Module):
    """Pools every RoI from one named feature map with RoIAlign or RoI max pooling.

    ``spatial_scale`` is the feature map's size over the input's, ``1 / stride`` of the
    backbone (:func:`pydetect.detectors` pass it when the backbone has a ``stride``). Without
    it, the scale is inferred per call as the power of two nearest to the feature height over
    the largest image height (as :class:`pydetect.ops.MultiScaleRoIAlign` and torchvision's
    poolers do), which is off by a factor of two when padding adds more than ~40% to the
    largest image. For several FPN levels use :class:`pydetect.ops.MultiScaleRoIAlign`, which
    has the same call signature:
    ``forward(features dict, boxes list of N (R, 4), image_sizes) -> (sum R, C, PH, PW)``.
    """

    def __init__(self, featmap_name="0", output_size=7, *, kind="align", sampling_ratio=2,
                 aligned=True, spatial_scale=None):
        super().__init__()
        if kind not in ("align", "pool"):
            raise ValueError(f"kind must be 'align' or 'pool', got {kind!r}")
        if spatial_scale is not None and not 0 < float(spatial_scale) <= 1:
            raise ValueError(f"spatial_scale must be None or in (0, 1], got {spatial_scale!r}")
        self.featmap_name, self.kind = featmap_name, kind
        self.output_size, self.sampling_ratio, self.aligned = output_size, sampling_ratio, aligned
        self.spatial_scale = None if spatial_scale is None else float(spatial_scale)

    def forward(self, features, boxes, image_sizes):
        f = features[self.featmap_name]
        scale = self.spatial_scale
        if scale is None:
            # In Python, not on a tensor: a tensor's float() is a graph break for torch.compile.
            scale = 2.0 ** round(math.log2(f.shape[-2] / max(s[0] for s in image_sizes)))
        boxes = [b.to(f.dtype) for b in boxes]
        if self.kind == "pool":
            return ops.roi_pool(f, boxes, self.output_size, scale)
        return ops.roi_align(f, boxes, self.output_size, scale, self.sampling_ratio, self.aligned)


def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """Multi-task loss: cross-entropy, and smooth L1 (beta 1/9) of the true class's deltas.

    class_logits (R, K+1), box_regression (R, 4 (K+1)), labels (R,) int64 in [0, K],
    regression_targets (R, 4). Returns ``(loss_classifier, loss_box_reg)``, the latter summed
    over foreground RoIs and divided by R.
    """
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = torch.nonzero(labels > 0).squeeze(1)
    r = class_logits.shape[0]
    box = box_regression.reshape(r, -1, 4)[pos, labels[pos]]
    loss_box = smooth_l1(box, regression_targets[pos], 1.0 / 9) / max(labels.numel(), 1)
    return loss_cls, loss_box


class RoIHeads(nn.Module):
    """Samples and labels proposals, pools their features, classifies and regresses them.

    Parameters
    ----------
    box_roi_pool : module ``(features, boxes, image_sizes) -> (R, C, PH, PW)``
    box_head : module (R, C, PH, PW) -> (R, D)
    box_predictor : module (R, D) -> ((R, K+1), (R, 4 (K+1)))
    fg_iou_thresh, bg_iou_thresh : float, default 0.5, 0.5
        Proposals with IoU >= fg are foreground; < bg background (in between ignored).
    bg_iou_low : float, default 0.0
        Proposals whose best IoU is below this are not used as background (Fast R-CNN: 0.1).
    batch_size_per_image, positive_fraction : int, float, default 128, 0.25
    bbox_reg_weights : 4 floats, default (10, 10, 5, 5)
    score_thresh, nms_thresh, detections_per_img : float, float, int, default 0.05, 0.5, 100
    add_gt_as_proposals : bool, default True
    balance_objects : bool, default False
        Sample the foreground so that each object gets the same expected number of RoIs
        (small objects have fewer proposals above ``fg_iou_thresh``).

    ``forward(features, proposals, image_sizes, targets=None) -> (detections, losses)``;
    detections (eval mode) are N dicts ``{"boxes" (D, 4), "scores" (D,), "labels" (D,)}``
    with labels 0-based (background removed).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, *, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                 bg_iou_low=0.0, batch_size_per_image=128, positive_fraction=0.25,
                 bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), score_thresh=0.05, nms_thresh=0.5,
                 detections_per_img=100, add_gt_as_proposals=True, balance_objects=False):
        super().__init__()
        self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.bg_iou_low = float(bg_iou_low)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.add_gt_as_proposals = bool(add_gt_as_proposals)
        self.balance_objects = bool(balance_objects)
        self.generator = None

    def select_training_samples(self, proposals, targets):
        """Sampled proposals, their labels (0 = background) and regression targets, per image."""
        out_boxes, out_labels, out_targets = [], [], []
        for props, t in zip(proposals, targets):
            gt, gt_labels = t["boxes"].to(props.dtype), t["labels"]
            if self.add_gt_as_proposals and gt.numel():
                props = torch.cat([props, gt], 0)
            m = self.matcher(gt, props)
            labels = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
            fg = m >= 0
            labels[fg] = gt_labels[m[fg]] + 1
            labels[m == Matcher.BETWEEN] = -1
            if self.bg_iou_low > 0 and gt.numel():
                best = ops.box_iou(gt.detach().float(), props.detach().float()).max(0).values
                labels[(labels == 0) & (best < self.bg_iou_low)] = -1
            pos, neg = self.sampler(labels, self.generator, m if self.balance_objects else None)
            keep = torch.nonzero(pos | neg).squeeze(1)
            props, labels = props[keep], labels[keep].clamp(min=0)
            matched = gt[m[keep].clamp(min=0)] if gt.numel() else torch.zeros_like(props)
            out_boxes.append(props)
            out_labels.append(labels)
            out_targets.append(self.box_coder.encode(matched, props))
        return out_boxes, out_labels, out_targets

    def postprocess(self, class_logits, box_regression, proposals, image_sizes):
        scores_all = F.softmax(class_logits, -1)
        boxes_all = self.box_coder.decode(box_regression, torch.cat(proposals, 0))
        results, start = [], 0
        for props, (h, w) in zip(proposals, image_sizes):
            r = props.shape[0]
            scores = scores_all[start:start + r, 1:]
            boxes = boxes_all[start:start + r].reshape(r, scores_all.shape[1], 4)[:, 1:]
            start += r
            k = scores.shape[1]
            boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                                 boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], -1)
            labels = torch.arange(k, device=scores.device).expand(r, k)
            boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
            ok = (scores > self.score_thresh) & ((boxes[:, 2] - boxes[:, 0]) >= 1e-2) & \
                 ((boxes[:, 3] - boxes[:, 1]) >= 1e-2)
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results

    def forward(self, features, proposals, image_sizes, targets=None):
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            proposals, labels, reg_targets = self.select_training_samples(proposals, targets)
        x = self.box_roi_pool(features, proposals, image_sizes)
        class_logits, box_regression = self.box_predictor(self.box_head(x))
        if self.training:
            loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, torch.cat(labels),
                                               torch.cat(reg_targets))
            losses = {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
            return [], losses
        return self.postprocess(class_logits, box_regression, proposals, image_sizes), losses
