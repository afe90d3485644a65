"""Fast R-CNN (Girshick, ICCV 2015) on selective-search proposals, as a pydetect estimator.

The whole image goes through the backbone once; RoIAlign by default, or the paper's RoI max
pooling (``roi_pool="pool"``), both pydetect's C++ ops, extracts a fixed-size feature for
each selective-search proposal; an FC head gives class
scores and class-specific box deltas, trained jointly (softmax + smooth L1). Minibatches of
2 images x 64 RoIs, 25% foreground (IoU >= 0.5), background IoU in [0.1, 0.5), as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch

from pydetect import engine, models, ops
from pydetect._params import Choice, Int
from pydetect.detectors.pretraining import Pretraining
from pydetect.detectors.two_stage import TwoStageEstimator, backbone_scale

__all__ = ["FastRCNN"]


class FastRCNN(TwoStageEstimator):
    """Fast R-CNN trained from scratch on a pydetect dataset, on selective-search proposals.

    Parameters
    ----------
    backbone : {"vgg", "resnet18"} or torch.nn.Module, default "vgg"
    proposal_mode : {"single", "fast", "quality"}, default "fast"
        :func:`pydetect.ops.selective_search` mode.
    train_proposals, test_proposals : int, default 1000, 500
        Best-ranked proposals kept per image.
    roi_pool : {"align", "pool"}, default "align"
        RoIAlign (He et al. 2017; FasterRCNN's pooler, so the two differ only in their
        proposals) or the paper's RoI max pooling; "align" because max pooling snaps each RoI to
        the stride-8 grid and lost box precision (benchmarks/RESULTS.md, "Parameter evidence
        (moved from the docstrings)").
    pretrain, batch_size, lr, ema_decay, weight_decay, balance_objects, eval_every, val_metric
        As in :class:`FasterRCNN` (``pretrain``: the default :class:`Pretraining`; with
        ``fit(dataset, val_dataset)`` the validation images' proposals are computed once).
    train_seconds : float, default 780
        With selective search on the training images and 90 s of pretraining: under a
        15-minute budget on 2 cores for digits_in_clutter's 500 training images.
    max_iter : int, default 8000
        An iteration costs ~0.1 s at 2 threads; the cap is set so that the budget, not the
        count, ends training, since AP50 still rose past 4,000 iterations
        (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    roi_batch_size_per_image : int, default 64
    representation_size : int, default 256
    box_score_thresh, box_nms_thresh, detections_per_img : default 0.05, 0.5, 100
    hflip, scale_jitter, augment, seed, checkpoint_dir, resume, progress, num_threads, device
        As in :class:`FasterRCNN` (the proposals move with the image). The proposals
        of the training images are computed once and cached in ``checkpoint_dir``
        (``proposals.npz``).

    Attributes
    ----------
    model_, class_names_, pretrain_accuracy_, pretrain_epochs_, history_
        As in :class:`FasterRCNN`.
    proposal_recall_ : float
        Share of training objects with a proposal of IoU >= 0.5 (the ceiling of the detector).
    """

    _checkpoint_name = "fast_rcnn.ckpt"
    _PARAMS = {"proposal_mode": Choice("single", "fast", "quality"), "train_proposals": Int(minimum=1),
               "test_proposals": Int(minimum=1), "roi_pool": Choice("align", "pool")}

    def __init__(self, *, backbone="vgg", proposal_mode="fast", train_proposals=1000, test_proposals=500,
                 roi_pool="align", pretrain=Pretraining(), train_seconds=780.0,
                 max_iter=8000, batch_size=2, lr=2e-3, ema_decay=None, weight_decay=1e-4, roi_batch_size_per_image=64,
                 balance_objects=True, eval_every=None, val_metric="AP",
                 representation_size=256, box_score_thresh=0.05, box_nms_thresh=0.5, detections_per_img=100,
                 hflip=False, scale_jitter=None, augment="default", seed=0, checkpoint_dir=None, resume=True,
                 progress=True, num_threads=None, device="cpu"):
        self.backbone = backbone
        self.proposal_mode = proposal_mode
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.roi_pool = roi_pool
        self.pretrain = pretrain
        self.train_seconds = train_seconds
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.lr = lr
        self.ema_decay = ema_decay
        self.weight_decay = weight_decay
        self.roi_batch_size_per_image = roi_batch_size_per_image
        self.balance_objects = balance_objects
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.representation_size = representation_size
        self.box_score_thresh = box_score_thresh
        self.box_nms_thresh = box_nms_thresh
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

    def _build(self, backbone, num_classes):
        c = backbone.out_channels
        pooler = models.RoIPooler("0", 7, kind=self.roi_pool, sampling_ratio=2, aligned=True,
                                  spatial_scale=backbone_scale(backbone))
        heads = models.RoIHeads(pooler, models.TwoMLPHead(c * 49, self.representation_size, pooled_branch=True),
                                models.FastRCNNPredictor(self.representation_size + c, num_classes + 1),
                                bg_iou_low=0.1, batch_size_per_image=self.roi_batch_size_per_image,
                                positive_fraction=0.25, score_thresh=self.box_score_thresh,
                                nms_thresh=self.box_nms_thresh, detections_per_img=self.detections_per_img,
                                balance_objects=self.balance_objects)
        return models.GeneralizedRCNN(backbone, None, heads, size_divisible=8)

    def _search(self, image, n):
        boxes = ops.selective_search(image, self.proposal_mode, seed=self.seed, max_boxes=int(n))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
        return torch.from_numpy(np.ascontiguousarray(boxes[keep]))

    def _training_proposals(self, dataset, images):
        props = [torch.from_numpy(p) for p in engine.cached_proposals(
            images, lambda im: self._search(im, self.train_proposals),
            self.checkpoint_dir, self.resume, self.progress)]
        hit = total = 0
        for i, p in enumerate(props):
            gt = np.asarray(dataset.target(i)["boxes"], np.float32).reshape(-1, 4)
            total += len(gt)
            if len(gt) and len(p):
                hit += int((np.asarray(ops.box_iou(gt, p.numpy())).max(1) >= 0.5).sum())
        self.proposal_recall_ = hit / max(total, 1)
        return props

    def _test_proposals(self, images):
        return [self._search(im, self.test_proposals) for im in images]
