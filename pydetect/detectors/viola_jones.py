"""Viola-Jones detector: a Haar cascade trained on a DetectionDataset (estimator API).

``ViolaJonesDetector(**params).fit(dataset)`` crops the objects of a class as positives,
takes image regions without such objects as backgrounds, trains an attentional cascade
(:func:`pydetect.cascade.train_cascade`) and keeps it in ``cascade_`` (a
:class:`pydetect.cascade.Cascade`, whose ``save`` writes OpenCV XML); a dataset of several
classes gets one cascade per class (``cascades_``). ``predict`` scans the
image with :class:`pydetect.cascade.CascadeDetector` (OpenCV's detectMultiScale, same boxes)
and scores each grouped box for ranking.

References
----------
P. Viola, M. Jones, "Robust real-time face detection", IJCV 57(2), 2004.
R. Lienhart, A. Kuranov, V. Pisarevsky, "Empirical analysis of detection cascades of boosted
classifiers for rapid object detection", DAGM 2003 (Gentle AdaBoost, OpenCV's trainer).
"""

from __future__ import annotations

import numbers
import os
import warnings

import cv2
import numpy as np

from pydetect._params import Bool, Check, Choice, Fraction, Int, OneOf, Optional, Path, Positive, Real
from pydetect._validation import check_fraction, check_int
from pydetect.cascade.detector import CascadeDetector
from pydetect.cascade.pyramid import check_size_bound, grey_image
from pydetect.cascade.model import Cascade
from pydetect.cascade.training import train_cascade
from pydetect.detectors.base import BaseDetector
from pydetect.structures import Detections

__all__ = ["ViolaJonesDetector"]


def _check_window(value, name):
    """An int n (n x n) or a (height, width) pair, each >= 3; returns (height, width)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (height, width), got {value!r}") from None
    return check_int(h, f"{name} height", minimum=3), check_int(w, f"{name} width", minimum=3)


def _intersects(boxes, x1, y1, x2, y2):
    if len(boxes) == 0:
        return False
    return bool(((boxes[:, 0] < x2) & (boxes[:, 2] > x1) & (boxes[:, 1] < y2) & (boxes[:, 3] > y1)).any())


class ViolaJonesDetector(BaseDetector):
    """Haar-cascade object detector trained from boxes (Viola & Jones, 2004).

    Parameters
    ----------
    window : (int, int), default (24, 24)
        Detection window ``(height, width)``.
    num_stages, min_hit_rate, max_false_alarm_rate, max_weak_count, mode, boost, max_depth,
    weight_trim_rate, num_pos, num_neg, max_features, augment, time_limit, checkpoint_dir,
    resume : see :func:`pydetect.cascade.train_cascade`
    margin : float, default 0.0
        Context added around each box on every side, as a fraction of its size, when
        cropping positives; predictions remove it again.
    backgrounds_per_image : int, default 4
        Random object-free regions taken from each training image as backgrounds (images
        without the class are used whole).
    scale_factor : float, default 1.1
        Pyramid ratio at prediction.
    min_neighbors : int, default 1
        Raw windows a group needs (more than this) to be reported; low because, with boxes
        ranked by support, a low value suits AP (benchmarks/RESULTS.md, "Parameter evidence
        (moved from the docstrings)").
    min_size, max_size : int or (width, height), optional
        Bounds on the detected window size in pixels.
    random_state : int, default 0
    progress : bool, default True

    Attributes
    ----------
    cascades_ : list of Cascade
        One trained cascade per detected class.
    labels_ : list of int
        The label each cascade gives its detections (the class index in the dataset).
    class_names_ : list of str
        The dataset's class names.
    training_logs_ : list of list of dict
        Per cascade, per-stage figures (weak count, hit rate, false-alarm rate, acceptance ratio).
    stop_reasons_ : list of str
        Why each cascade's training stopped.
    cascade_, label_, class_name_, training_log_, stop_reason_
        The same for a detector of one class (set only then).
    """

    def __init__(self, *, window=(24, 24), num_stages=20, min_hit_rate=0.995,
                 max_false_alarm_rate=0.5, max_weak_count=100, mode="basic", boost="gentle",
                 max_depth=1, weight_trim_rate=0.95, num_pos=2000, num_neg=1000,
                 max_features=10000, augment=True, margin=0.0, backgrounds_per_image=4,
                 scale_factor=1.1, min_neighbors=1, min_size=None, max_size=None,
                 time_limit=480.0, checkpoint_dir=None, resume=False, random_state=0,
                 progress=True):
        self.window = window
        self.num_stages = num_stages
        self.min_hit_rate = min_hit_rate
        self.max_false_alarm_rate = max_false_alarm_rate
        self.max_weak_count = max_weak_count
        self.mode = mode
        self.boost = boost
        self.max_depth = max_depth
        self.weight_trim_rate = weight_trim_rate
        self.num_pos = num_pos
        self.num_neg = num_neg
        self.max_features = max_features
        self.augment = augment
        self.margin = margin
        self.backgrounds_per_image = backgrounds_per_image
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_size = max_size
        self.time_limit = time_limit
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------------------
    #: The cascade-training parameters repeat :func:`pydetect.cascade.train_cascade`'s rules,
    #: so that a bad value is refused before the samples are cropped.
    _PARAMS = {
        "window": Check(_check_window, "an int or a (height, width) pair of ints >= 3"),
        "num_stages": Int(minimum=1),
        "min_hit_rate": Real(0, 1, closed="right"),
        "max_false_alarm_rate": Real(0, 1, closed="neither"),
        "max_weak_count": Int(minimum=1),
        "mode": Choice("basic", "core", "all"),
        "boost": Choice("gentle", "discrete", "real"),
        "max_depth": Int(minimum=1, maximum=2),
        "weight_trim_rate": Fraction(),
        "num_pos": Optional(Int(minimum=1)),
        "num_neg": Optional(Int(minimum=1)),
        "max_features": Optional(Int(minimum=1)),
        "augment": Optional(OneOf(Bool(), Int(minimum=1))),
        "margin": Fraction(),
        "backgrounds_per_image": Int(minimum=0),
        "scale_factor": Real(1, closed="neither"),
        "min_neighbors": Int(minimum=0),
        "min_size": Check(check_size_bound, "None, an int or a (width, height) pair"),
        "max_size": Check(check_size_bound, "None, an int or a (width, height) pair"),
        "time_limit": Optional(Positive()),
        "checkpoint_dir": Optional(Path()),
        "resume": Bool(),
        "random_state": Int(minimum=0),
        "progress": Bool(),
    }

    def _check_param_combinations(self):
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")

    def _window(self):
        return _check_window(self.window, "window")

    def extract_samples(self, dataset, class_name=None):
        """Positive windows and background regions of one class of a DetectionDataset.

        Returns
        -------
        positives : (P, h, w) uint8 ndarray
        backgrounds : list of (H, W) uint8 arrays
        label : int
        """
        h, w = self._window()
        margin = check_fraction(self.margin, "margin")
        per_image = check_int(self.backgrounds_per_image, "backgrounds_per_image", minimum=0)
        names = list(dataset.class_names)
        if class_name is None:
            if len(names) != 1:
                raise ValueError(f"the dataset has {len(names)} classes ({', '.join(map(str, names))}): "
                                 "pass class_name= to choose the one to detect")
            label = 0
        else:
            if class_name not in names:
                raise ValueError(f"class_name {class_name!r} is not one of the dataset's classes "
                                 f"{names}")
            label = names.index(class_name)
        rng = np.random.default_rng(self.random_state)
        positives, backgrounds = [], []
        for image, target in dataset:
            g = grey_image(image, "image")
            H, W = g.shape
            boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4)
            labels = np.asarray(target["labels"]).reshape(-1)
            mine = boxes[labels == label]
            for x1, y1, x2, y2 in mine:
                bw, bh = x2 - x1, y2 - y1
                X1, Y1 = x1 - margin * bw, y1 - margin * bh
                X2, Y2 = x2 + margin * bw, y2 + margin * bh
                X1, Y1, X2, Y2 = (int(round(v)) for v in (X1, Y1, X2, Y2))
                if X1 < 0 or Y1 < 0 or X2 > W or Y2 > H or X2 - X1 < 2 or Y2 - Y1 < 2:
                    continue  # the window with its margin leaves the image
                crop = g[Y1:Y2, X1:X2]
                interp = cv2.INTER_AREA if crop.shape[0] > h else cv2.INTER_LINEAR
                positives.append(cv2.resize(crop, (w, h), interpolation=interp))
            if len(mine) == 0:
                backgrounds.append(g)
                continue
            taken = 0
            for _ in range(per_image * 5):  # a few tries per wanted region
                if taken >= per_image:
                    break
                side_h = int(rng.integers(min(2 * h, H), H + 1))
                side_w = int(rng.integers(min(2 * w, W), W + 1))
                y = int(rng.integers(H - side_h + 1))
                x = int(rng.integers(W - side_w + 1))
                if side_h >= h and side_w >= w and not _intersects(mine, x, y, x + side_w, y + side_h):
                    backgrounds.append(g[y:y + side_h, x:x + side_w].copy())
                    taken += 1
        if not positives:
            raise ValueError("no positive window could be cropped: the dataset holds no box of "
                             "this class fully inside its image (with the margin)")
        return np.stack(positives), backgrounds, label

    def fit(self, dataset, class_name=None):
        """Trains a cascade on the boxes of ``class_name``, or one cascade per class.

        Parameters
        ----------
        dataset : pydetect.data.DetectionDataset
        class_name : str, optional
            The class to detect. Default: every class of the dataset, one cascade each
            (one-vs-rest: the other classes' objects are never cropped as backgrounds, but
            regions around them are; a class without any box is skipped with a warning).
            ``time_limit`` is then the budget of the whole fit,
            shared equally by the classes, and checkpoints go to ``checkpoint_dir/class_<k>``.

        Returns
        -------
        self
        """
        self._validate_params()
        if not hasattr(dataset, "class_names"):
            raise TypeError(f"dataset must be a DetectionDataset, got {type(dataset).__name__}")
        names = [str(n) for n in dataset.class_names]
        if class_name is not None or len(names) == 1:
            chosen = [class_name]
        else:  # every class with at least one box
            present = set()
            for _, target in dataset:
                present.update(np.asarray(target["labels"]).reshape(-1).tolist())
            chosen = [n for k, n in enumerate(names) if k in present]
            if len(chosen) < len(names):

                missing = [n for n in names if n not in chosen]
                warnings.warn(f"no training box for classes {missing}: no cascade is trained for them",
                              stacklevel=2)
        share = 1.0 / len(chosen)
        cascades, labels, logs, reasons = [], [], [], []
        for k, name in enumerate(chosen):
            checkpoint_dir = self.checkpoint_dir
            if checkpoint_dir is not None and len(chosen) > 1:
                checkpoint_dir = os.path.join(checkpoint_dir, f"class_{k}")
            cascade, log, label = self._fit_one(dataset, name, share, checkpoint_dir)
            cascades.append(cascade)
            labels.append(label)
            logs.append(list(log))
            reasons.append(log.stop_reason)
        self.cascades_ = cascades
        self.labels_ = labels
        self.class_names_ = names
        self.training_logs_ = logs
        self.stop_reasons_ = reasons
        self._set_single_class_aliases()
        return self

    def _fit_one(self, dataset, class_name, time_share, checkpoint_dir):
        positives, backgrounds, label = self.extract_samples(dataset, class_name)
        if not backgrounds:
            raise ValueError("no object-free region found in the dataset to mine negatives from; "
                             "add images without the object or raise backgrounds_per_image")
        time_limit = None if self.time_limit is None else float(self.time_limit) * time_share
        cascade, log = train_cascade(
            positives, backgrounds, num_stages=self.num_stages, min_hit_rate=self.min_hit_rate,
            max_false_alarm_rate=self.max_false_alarm_rate, max_weak_count=self.max_weak_count,
            mode=self.mode, boost=self.boost, max_depth=self.max_depth,
            weight_trim_rate=self.weight_trim_rate, num_pos=self.num_pos, num_neg=self.num_neg,
            max_features=self.max_features, augment=self.augment, time_limit=time_limit,
            checkpoint_dir=checkpoint_dir, resume=self.resume,
            random_state=self.random_state, progress=self.progress, return_log=True)
        return cascade, log, int(label)

    def _set_single_class_aliases(self):
        """A fit on one class also exposes ``cascade_``, ``label_``, ``class_name_``, ..."""
        if len(self.cascades_) == 1:
            self.cascade_ = self.cascades_[0]
            self.label_ = self.labels_[0]
            self.class_name_ = self.class_names_[self.label_]
            self.training_log_ = self.training_logs_[0]
            self.stop_reason_ = self.stop_reasons_[0]

    @classmethod
    def from_cascade(cls, cascade, *, class_name="object", **params):
        """Wraps a trained cascade (e.g. one of OpenCV's) as a fitted one-class detector.

        Parameters
        ----------
        cascade : Cascade or path
            A :class:`pydetect.cascade.Cascade` or an OpenCV cascade XML file.
        class_name : str
            Name of the detected class (label 0).
        **params
            Prediction parameters (``scale_factor``, ``min_neighbors``, ``min_size``,
            ``max_size``, ``margin``).

        Returns
        -------
        ViolaJonesDetector
            Ready for ``predict`` and ``save``; its ``training_logs_`` are empty.
        """
        det = cls(**params)
        if not isinstance(cascade, Cascade):
            cascade = Cascade.load(cascade)
        det.cascades_ = [cascade]
        det.labels_ = [0]
        det.class_names_ = [str(class_name)]
        det.training_logs_ = [[]]
        det.stop_reasons_ = ["pretrained"]
        det._set_single_class_aliases()
        return det

    # Persistence: a Cascade holds a native model; store its flat arrays (Cascade.to_arrays).
    _ALIASES = ("cascade_", "label_", "class_name_", "training_log_", "stop_reason_")

    def _get_state(self) -> dict:
        state = {k: v for k, v in super()._get_state().items() if k not in self._ALIASES}
        state["cascades_"] = [c.to_arrays() for c in self.cascades_]
        return state

    def _set_state(self, state: dict) -> None:
        state = dict(state)
        self.cascades_ = [Cascade(**a) for a in state.pop("cascades_")]
        vars(self).update(state)
        self._set_single_class_aliases()

    def _set_pickled_state(self, state: dict) -> None:
        # Format 1 kept the cascades' arrays under "_cascade_arrays", the rest as __dict__.
        state = dict(state)
        arrays = state.pop("_cascade_arrays")
        self._set_state(dict(state, cascades_=arrays))

    def predict(self, image) -> Detections:
        """Detects the class (or each class) in one image.

        Returns
        -------
        Detections
            Grouped boxes (xyxy) with ``scores = n + sigmoid(s)``, where ``n`` is the number of
            raw windows in the group and ``s`` the best last-stage sum in it (OpenCV's
            ``levelWeights``), so that boxes rank by support first; extra fields
            ``neighbors`` and ``stage_sum``. With several cascades, their detections are
            concatenated (no suppression across classes), sorted by score.
        """
        self._check_fitted()
        g = grey_image(image, "image")
        min_neighbors = check_int(self.min_neighbors, "min_neighbors", minimum=0)
        parts = [self._detect_one(g, cascade, label, min_neighbors)
                 for cascade, label in zip(self.cascades_, self.labels_)]
        out = parts[0] if len(parts) == 1 else Detections.concat(parts)
        return out.sorted() if len(out) else out

    def _detect_one(self, grey, cascade, label, min_neighbors) -> Detections:
        det = CascadeDetector(cascade).detect(
            grey, scale_factor=self.scale_factor, min_neighbors=min_neighbors,
            min_size=self.min_size, max_size=self.max_size, return_levels=True)
        boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4)
        m = float(self.margin)
        if m > 0 and len(boxes):
            bw = (boxes[:, 2] - boxes[:, 0]) / (1 + 2 * m)
            bh = (boxes[:, 3] - boxes[:, 1]) / (1 + 2 * m)
            boxes = np.stack([boxes[:, 0] + m * bw, boxes[:, 1] + m * bh,
                              boxes[:, 2] - m * bw, boxes[:, 3] - m * bh], axis=1)
        neighbors = np.asarray(det.scores, np.float32).reshape(-1)
        stage_sum = np.asarray(det.level_weights, np.float64).reshape(-1)
        scores = (neighbors + 1.0 / (1.0 + np.exp(-stage_sum))).astype(np.float32)
        labels = np.full(len(boxes), label, np.int64)
        return Detections(boxes.astype(np.float32), scores=scores, labels=labels,
                          neighbors=neighbors, stage_sum=stage_sum.astype(np.float32))
