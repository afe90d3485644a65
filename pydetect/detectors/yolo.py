"""YOLO (Redmon et al. 2016; Redmon and Farhadi 2017, 2018) as a pydetect estimator.

One network pass predicts boxes and classes at every cell of a grid: no proposals. Two forms
share the estimator: ``anchors=None`` is YOLOv1 as published (free box predictors per cell,
:class:`pydetect.models.YOLOv1Net`), anchor shapes (k-means clusters of the training boxes
by default) give the YOLOv2/v3 form (:class:`pydetect.models.YOLONet`).
"""

from __future__ import annotations

import numpy as np

from pydetect._params import Check, Fraction, Int, NonNegative, Optional, Real, Sequence
from pydetect._validation import check_int
from pydetect.detectors.one_stage import (OneStageEstimator, check_priors, check_shapes, fitted_box_shapes,
                                          split_by_level, training_shapes)
from pydetect.detectors.pretraining import Pretraining
from pydetect.models.yolo import YOLONet, YOLOv1Net

__all__ = ["YOLO"]


def _check_anchors(value, name):
    return check_priors(value, name, "'kmeans', None or a (k, 2) array")


def _check_strides(value, name):
    """Distinct output strides, each 8 (the backbone's) times a power of two."""
    Sequence(Int(minimum=8), min_length=1).check(value, name)
    if any(s & (s - 1) for s in value):
        raise ValueError(f"{name} must be 8 times powers of two (8, 16, 32, ...), got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} must be distinct, got {value!r}")
    return value


class YOLO(OneStageEstimator):
    """YOLO trained from scratch on a pydetect dataset, with YOLOv1's grid or anchor priors.

    Training is the R-CNN family's recipe (crop pretraining of the backbone, then end-to-end
    AdamW with warm-up and cosine decay within ``train_seconds``; checkpoints, resume, EMA,
    DDP): see :class:`pydetect.detectors.FasterRCNN`, whose budget the defaults match.

    Parameters
    ----------
    anchors : "kmeans", None or array (k, 2), default "kmeans"
        "kmeans": ``num_anchors`` (w, h) clusters of the training boxes
        (:func:`pydetect.models.kmeans_anchors`, YOLOv2's dimension clusters), split by area
        across ``strides`` (smallest to the finest, as YOLOv3 does). An array: those shapes
        (input pixels), split the same way. None: YOLOv1 (one grid of ``strides[0]``-pixel
        cells, ``predictors_per_cell`` box predictors each, sqrt(w), sqrt(h), confidence
        target = IoU, ``lambda_coord`` / ``lambda_noobj``, class probabilities per cell).
    num_anchors : int, default 9
        k for ``anchors="kmeans"``.
    strides : tuple of int, optional
        Output strides: default (8, 16, 32) with anchors, (16,) for YOLOv1 (one grid).
        Multiples of the backbone's stride 8 by powers of two.
    predictors_per_cell : int, default 2
        YOLOv1's B.
    lambda_coord, lambda_noobj : float, default 5.0, 0.5
        YOLOv1's weights of the box terms and of the confidence of predictors without object.
    assign_iou : float in (0, 1] or None, default 0.5
        With anchors: besides each object's best anchor, every anchor whose shape IoU with the
        object reaches this is responsible for it too (YOLOv4's rule; None: the best only, as
        YOLOv3); 0.5 because more positives per object raised AP50 (benchmarks/RESULTS.md,
        "Parameter evidence (moved from the docstrings)").
    ignore_iou : float, default 0.5
        With anchors: priors whose box overlaps an object more than this, without being
        responsible for it, are left out of the objectness loss (YOLOv3).
    pretrain : Pretraining or None, default Pretraining()
        Crop pretraining of the backbone, as :class:`pydetect.detectors.FasterRCNN`.
    train_seconds : float, default 780
    max_iter : int, default 7000
    batch_size : int, default 4
    lr, weight_decay : float, default 2e-3, 1e-4
    ema_decay : float in (0, 1) or None, default None
    score_thresh, nms_thresh, detections_per_img : default 0.01, 0.5, 100
        Least score (objectness x class probability), per-class NMS IoU, detections kept.
    hflip : bool, default False
    scale_jitter : (float, float) or None, default None
        Multi-scale training: each training image is resized by log-uniform x and y factors
        in this range.
    augment : "default", dict or None, default "default"
        Photometric augmentation, as :class:`pydetect.detectors.FasterRCNN`.
    seed : int, default 0
    checkpoint_dir, resume, progress, num_threads, device
        As :class:`pydetect.detectors.FasterRCNN`.

    Attributes
    ----------
    model_ : pydetect.models.YOLONet or pydetect.models.YOLOv1Net
    class_names_ : list of str
    anchors_ : list of lists of (w, h), one per stride, or None for YOLOv1
    anchor_mean_iou_ : float or None
        Mean IoU of the training boxes with their best k-means anchor.
    size_norm_ : float
        YOLOv1's size normaliser (see :func:`pydetect.models.yolo.yolov1_loss`): the largest
        training box side.
    pretrain_accuracy_, pretrain_epochs_ : float or None
        Held-out crop accuracy after pretraining, and the epochs of it trained (fewer than
        ``pretrain.epochs`` when ``pretrain.seconds`` ran out first).
    history_ : dict
    """

    _checkpoint_name = "yolo.ckpt"
    _PARAMS = {
        "anchors": Check(_check_anchors, "'kmeans', None or a (k, 2) array of (w, h)"),
        "num_anchors": Int(minimum=1),
        "strides": Optional(Check(_check_strides, "distinct strides, 8 times powers of two")),
        "predictors_per_cell": Int(minimum=1),
        "lambda_coord": NonNegative(),
        "lambda_noobj": NonNegative(),
        "assign_iou": Optional(Real(0, 1, closed="right")),
        "ignore_iou": Fraction(),
    }

    def __init__(self, *, backbone="vgg", anchors="kmeans", num_anchors=9, strides=None, predictors_per_cell=2,
                 lambda_coord=5.0, lambda_noobj=0.5, assign_iou=0.5, ignore_iou=0.5, pretrain=Pretraining(),
                 train_seconds=780.0, max_iter=7000, batch_size=4, lr=2e-3, ema_decay=None, weight_decay=1e-4,
                 score_thresh=0.01, nms_thresh=0.5, detections_per_img=100, hflip=False, scale_jitter=None,
                 augment="default", seed=0, checkpoint_dir=None, resume=True, progress=True, num_threads=None,
                 device="cpu"):
        self.backbone = backbone
        self.anchors = anchors
        self.num_anchors = num_anchors
        self.strides = strides
        self.predictors_per_cell = predictors_per_cell
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.assign_iou = assign_iou
        self.ignore_iou = ignore_iou
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

    # ------------------------------------------------------------------------- parameters
    def _strides(self):
        if self.strides is not None:
            return tuple(int(s) for s in self.strides)
        return (16,) if self.anchors is None else (8, 16, 32)

    def _check_param_combinations(self):
        levels = len(self._strides())
        if self.anchors is None:
            if levels != 1:
                raise ValueError(f"YOLOv1 (anchors=None) has one grid: give one stride, got {self.strides!r}")
        elif isinstance(self.anchors, str):
            check_int(self.num_anchors, "num_anchors", minimum=levels)
        elif len(check_shapes(self.anchors, "anchors")) < levels:
            raise ValueError(f"anchors: give at least one shape per stride ({levels}), got {len(self.anchors)}")

    # ------------------------------------------------------------------------- building
    def _prepare(self, targets):
        levels = len(self._strides())
        self.anchor_mean_iou_ = None
        wh = training_shapes(targets)
        self.size_norm_ = float(wh.max()) if len(wh) else 64.0
        if self.anchors is None:
            self.anchors_ = None
        elif isinstance(self.anchors, str):
            self.anchors_, self.anchor_mean_iou_ = fitted_box_shapes(targets, self.num_anchors, self.seed, levels)
        else:
            self.anchors_ = split_by_level(check_shapes(self.anchors, "anchors"), levels)

    def _build(self, backbone, num_classes):
        common = dict(score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                      detections_per_img=self.detections_per_img)
        if self.anchors_ is None:
            return YOLOv1Net(backbone, num_classes, self._strides()[0], predictors=self.predictors_per_cell,
                             size_norm=self.size_norm_, lambda_coord=self.lambda_coord,
                             lambda_noobj=self.lambda_noobj, **common)
        return YOLONet(backbone, num_classes, [np.asarray(a, np.float32) for a in self.anchors_], self._strides(),
                       assign_iou=self.assign_iou, ignore_iou=self.ignore_iou, **common)
