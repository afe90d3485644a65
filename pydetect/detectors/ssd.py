"""SSD (Liu et al., ECCV 2016) as a pydetect estimator.

Default boxes of several scales and aspect ratios on several feature maps, each classified
(K + 1 classes) and regressed by a 3x3 conv: :class:`pydetect.models.SSDNet`.
"""

from __future__ import annotations

import numpy as np

from pydetect._params import Check, Int, Optional, Positive, Real, Sequence
from pydetect.detectors.one_stage import (OneStageEstimator, check_priors, check_shapes, fitted_box_shapes,
                                          split_by_level, training_shapes)
from pydetect.detectors.pretraining import Pretraining
from pydetect.models.ssd import SSDNet, default_box_shapes

__all__ = ["SSD"]

_STRIDES = (8, 16, 32)


def _check_anchors(value, name):
    return check_priors(value, name, "None, 'kmeans' or a (k, 2) array")


class SSD(OneStageEstimator):
    """SSD trained from scratch on a pydetect dataset.

    Training is the R-CNN family's recipe (crop pretraining of the backbone, then end-to-end
    AdamW with warm-up and cosine decay within ``train_seconds``; checkpoints, resume, EMA,
    DDP): see :class:`pydetect.detectors.FasterRCNN`, whose budget the defaults match.
    Feature maps at strides 8, 16 and 32 (the backbone's and two extra levels).

    Parameters
    ----------
    anchors : None, "kmeans" or array (k, 2), default None
        None: the paper's default boxes (:func:`pydetect.models.ssd.default_box_shapes`):
        ``scales`` and ``aspect_ratios`` at each level, plus the intermediate square.
        "kmeans": ``num_anchors`` k-means clusters of the training boxes split by area across
        the levels; an array: those (w, h) shapes, split the same way.
    scales : sequence of 3 float, optional
        Default-box scale (pixels) per level. Default: the paper's linear spacing
        ``s_min + (s_max - s_min) l / 2`` between the 5th and 95th percentiles of the training
        boxes' sqrt(w h) (the paper spaces 0.2 to 0.9 of a fixed image side).
    aspect_ratios : sequence of float, default (2.0,)
        Each r adds the boxes of h / w = r and 1 / r to the square ones.
    num_anchors : int, default 12
        k for ``anchors="kmeans"``.
    iou_thresh : float, default 0.5
        Matching: besides each object's best default box, every box overlapping an object
        at least this much is matched to it.
    neg_pos_ratio : int, default 3
        Hard negatives per matched box.
    pretrain : Pretraining or None, default Pretraining()
        Crop pretraining of the backbone, as :class:`pydetect.detectors.FasterRCNN`.
    train_seconds : float, default 780
    max_iter : int, default 7000
    batch_size : int, default 4
    lr, weight_decay : float, default 2e-3, 1e-4
    ema_decay : float in (0, 1) or None, default None
    score_thresh, nms_thresh, detections_per_img : default 0.01, 0.45, 100
        The paper's inference settings.
    hflip, scale_jitter, augment, seed, checkpoint_dir, resume, progress, num_threads, device
        As :class:`pydetect.detectors.YOLO`.

    Attributes
    ----------
    model_ : pydetect.models.SSDNet
    class_names_ : list of str
    box_shapes_ : list of lists of (w, h), the default boxes of each level
    scales_ : tuple of float or None
    anchor_mean_iou_ : float or None
    pretrain_accuracy_, pretrain_epochs_ : float or None
        Held-out crop accuracy after pretraining, and the epochs of it trained (fewer than
        ``pretrain.epochs`` when ``pretrain.seconds`` ran out first).
    history_ : dict
    """

    _checkpoint_name = "ssd.ckpt"
    _PARAMS = {
        "anchors": Check(_check_anchors, "None, 'kmeans' or a (k, 2) array of (w, h)"),
        "scales": Optional(Sequence(Positive(), length=len(_STRIDES), of="positive numbers (one per level)")),
        "aspect_ratios": Sequence(Positive(), of="positive numbers"),
        "num_anchors": Int(minimum=len(_STRIDES)),
        "iou_thresh": Real(0, 1, closed="right"),
        "neg_pos_ratio": Int(minimum=1),
    }

    def __init__(self, *, backbone="vgg", anchors=None, scales=None, aspect_ratios=(2.0,), num_anchors=12,
                 iou_thresh=0.5, neg_pos_ratio=3, pretrain=Pretraining(), train_seconds=780.0, max_iter=7000,
                 batch_size=4, lr=2e-3, ema_decay=None, weight_decay=1e-4, score_thresh=0.01, nms_thresh=0.45,
                 detections_per_img=100, hflip=False, scale_jitter=None, augment="default", seed=0,
                 checkpoint_dir=None, resume=True, progress=True, num_threads=None, device="cpu"):
        self.backbone = backbone
        self.anchors = anchors
        self.scales = scales
        self.aspect_ratios = aspect_ratios
        self.num_anchors = num_anchors
        self.iou_thresh = iou_thresh
        self.neg_pos_ratio = neg_pos_ratio
        self.pretrain = pretrain
        self.train_seconds = train_seconds
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.lr = lr
        self.ema_decay = ema_decay
        self.weight_decay = weight_decay
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.hflip = hflip
        self.scale_jitter = scale_jitter
        self.augment = augment
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.num_threads = num_threads
        self.device = device

    def _check_param_combinations(self):
        if not isinstance(self.anchors, str) and self.anchors is not None and \
                len(check_shapes(self.anchors, "anchors")) < len(_STRIDES):
            raise ValueError(f"anchors: give at least one shape per level ({len(_STRIDES)})")

    def _prepare(self, targets):
        self.anchor_mean_iou_ = None
        self.scales_ = None
        if self.anchors is None:
            if self.scales is not None:
                scales = tuple(float(s) for s in self.scales)
            else:
                wh = training_shapes(targets)
                if len(wh) == 0:
                    raise ValueError("SSD needs training boxes to fit its default box scales (or give scales)")
                lo, hi = np.quantile(np.sqrt(wh.prod(1)), (0.05, 0.95))
                scales = tuple(float(lo + (hi - lo) * i / (len(_STRIDES) - 1)) for i in range(len(_STRIDES)))
            self.scales_ = scales
            self.box_shapes_ = [s.tolist() for s in default_box_shapes(scales, self.aspect_ratios)]
        elif isinstance(self.anchors, str):
            self.box_shapes_, self.anchor_mean_iou_ = fitted_box_shapes(targets, self.num_anchors, self.seed,
                                                                        len(_STRIDES))
        else:
            self.box_shapes_ = split_by_level(check_shapes(self.anchors, "anchors"), len(_STRIDES))

    def _build(self, backbone, num_classes):
        return SSDNet(backbone, num_classes, [np.asarray(a, np.float32) for a in self.box_shapes_], _STRIDES,
                      iou_thresh=self.iou_thresh, neg_pos_ratio=self.neg_pos_ratio, score_thresh=self.score_thresh,
                      nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img)
