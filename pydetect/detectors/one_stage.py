"""Fit / predict / persistence shared by the one-stage CNN detectors (YOLO, SSD).

The recipe is the R-CNN family's (:mod:`pydetect.engine`): the backbone is first
pretrained as a crop classifier of the training objects and background, then the whole
network is trained end to end with AdamW, warm-up and cosine decay, within a time budget,
with checkpoints, resume, EMA and DDP from :func:`pydetect.engine.train_loop`.
A subclass gives ``_prepare(targets)`` (fitted priors), ``_build(backbone, num_classes)``
(the :class:`pydetect.models.dense.DenseDetector`), its ``_PARAMS`` and, for rules between
parameters, ``_check_param_combinations``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from pydetect import engine, models
from pydetect._params import Choice, Fraction, Group, Optional
from pydetect._validation import check_int, check_scale_range
from pydetect.detectors.cnn import END_TO_END_PARAMS, CNNEstimator
from pydetect.detectors.pretraining import Pretraining
from pydetect.models.kmeans import kmeans_anchors
from pydetect.structures import Detections

__all__ = ["OneStageEstimator", "fitted_box_shapes"]


def check_priors(value, name, expected):
    """The ``anchors`` of YOLO and SSD: None, "kmeans" or an explicit (k, 2) prior set
    (:func:`check_shapes`); ``expected`` words the error for another string."""
    if value is None or (isinstance(value, str) and value == "kmeans"):
        return value
    if isinstance(value, str):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return check_shapes(value, name)


def check_shapes(value, name):
    """An explicit prior set: (k, 2) positive finite (w, h) -> float64 array."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 'kmeans', None or a (k, 2) array of (w, h), got {value!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise ValueError(f"{name} must be a (k, 2) array of (w, h) with k >= 1, got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{name} must hold positive finite widths and heights, got {arr.tolist()}")
    return arr


def training_shapes(targets) -> np.ndarray:
    """(n, 2) (w, h) of every training box."""
    b = np.concatenate([np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in targets])
    return b[:, 2:] - b[:, :2]


def fitted_box_shapes(targets, k, seed, levels):
    """k-means anchor shapes of the training boxes split across ``levels`` feature levels
    by area, smallest to the finest (YOLOv3's assignment of the nine clusters); returns
    (list of per-level (w, h) lists, mean IoU)."""
    wh = training_shapes(targets)
    if len(wh) == 0:
        raise ValueError("anchors='kmeans' needs training boxes; the dataset has none")
    k = min(k, len(np.unique(wh, axis=0)))
    if k < levels:
        raise ValueError(f"anchors='kmeans' needs at least {levels} distinct training box shapes (one per "
                         f"level), got {k}")
    anchors, mean_iou = kmeans_anchors(wh, k, seed=seed)
    return split_by_level(anchors, levels), float(mean_iou)


def split_by_level(shapes, levels):
    """Area-sorted (k, 2) shapes as ``levels`` nearly equal consecutive groups, finest first."""
    shapes = np.asarray(shapes, np.float64)
    shapes = shapes[np.argsort(shapes.prod(1), kind="stable")]
    return [g.tolist() for g in np.array_split(shapes, levels)]


class OneStageEstimator(CNNEstimator):
    """Base class of YOLO and SSD (see the module docstring)."""

    _checkpoint_name = "one_stage.ckpt"
    #: 2: the crop-pretraining settings became one ``pretrain`` parameter (CNNEstimator._upgrade).
    _STATE_VERSION = 2
    _PARAMS = {
        **END_TO_END_PARAMS,
        "backbone": Choice("vgg"),
        "pretrain": Optional(Group(Pretraining)),
        "score_thresh": Fraction(),
        "nms_thresh": Fraction(),
    }

    def _prepare(self, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def _build(self, backbone, num_classes):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _new_backbone():
        return models.VGGStyle()

    # ------------------------------------------------------------------------- training
    def _fit(self, dataset, class_names, targets, device):
        torch.manual_seed(self.seed)
        engine.distributed_info(device)  # under torchrun: joins the process group before any collective
        self._prepare(targets)
        ckpt_dir = self.checkpoint_dir
        if ckpt_dir is not None:
            os.makedirs(ckpt_dir, exist_ok=True)
        backbone = self._new_backbone()
        self.pretrain_accuracy_, self.pretrain_epochs_ = None, None
        pre = self.pretrain
        if pre is not None and pre.seconds > 0:
            self._crop_pretrain(backbone, dataset, len(class_names), device)
        model = self._build(backbone, len(class_names)).to(device)
        images = [dataset[i][0] for i in range(len(dataset))]
        tgts = [{"boxes": np.asarray(t["boxes"], np.float32).reshape(-1, 4),
                 "labels": np.asarray(t["labels"], np.int64).reshape(-1)} for t in targets]
        augment = engine.build_augmentation(self.augment, hflip=self.hflip,
                                       scale_jitter=check_scale_range(self.scale_jitter, "scale_jitter"))
        batch_size = self.batch_size

        def sample_batch(it, rank, world, rng):
            # Drawn and augmented on the CPU (numpy), then copied to the training device.
            idx = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
            ims, ts = [], []
            for i in idx:
                im, t = images[i], tgts[i]
                if augment is not None:
                    im, t = augment(im, t, rng)
                ims.append(engine.image_to_tensor(im).to(device))
                ts.append({"boxes": torch.from_numpy(np.ascontiguousarray(t["boxes"], np.float32)).to(device),
                           "labels": torch.from_numpy(np.ascontiguousarray(t["labels"], np.int64)).to(device)})
            return ims, ts

        ckpt = os.path.join(ckpt_dir, self._checkpoint_name) if ckpt_dir else None
        self.history_ = engine.train_loop(model, sample_batch, max_iter=self.max_iter, seconds=self.train_seconds,
                                     lr=self.lr, weight_decay=self.weight_decay, seed=self.seed,
                                     checkpoint_path=ckpt, resume=self.resume, progress=self.progress,
                                     ema_decay=self.ema_decay, desc=type(self).__name__)
        model.eval()
        self.model_ = model
        self.class_names_ = class_names
        return self

    # ------------------------------------------------------------------------- persistence
    def _get_state(self) -> dict:
        return dict(super()._get_state(), model_=self.model_.state_dict())

    def _set_state(self, state: dict) -> None:
        """Rebuilds the network from the parameters and the fitted priors, then loads its
        weights (on the CPU: the first prediction moves it to ``device``)."""
        state = dict(state)
        weights = state.pop("model_")
        vars(self).update(state)
        with torch.random.fork_rng(devices=[]):  # the throwaway initial weights draw from torch's RNG
            model = self._build(self._new_backbone(), len(self.class_names_))
        model.load_state_dict(weights)
        self.model_ = model.eval()

    # ------------------------------------------------------------------------- inference
    def predict(self, image) -> Detections:
        """Detections of one image (H, W) or (H, W, 3); labels index ``class_names_``."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images, batch_size=4) -> list:
        """Detections of each image, run ``batch_size`` images at a time on ``device``
        (padded to a common size: the padding is outside every image's boxes)."""
        self._check_fitted()
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        device = engine.resolve_device(self.device)
        tensors = [engine.image_to_tensor(im) for im in images]
        self.model_.to(device).eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(tensors), batch_size):
                for d in self.model_([t.to(device) for t in tensors[s:s + batch_size]]):
                    out.append(Detections(d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(),
                                          d["labels"].cpu().numpy()))
        return out
