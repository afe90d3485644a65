"""Implicit Shape Model detector (Leibe, Leonardis & Schiele, IJCV 2008).

Glossary: F features, D descriptor length, E codebook entries, O occurrences, V votes,
K hypotheses (mean-shift modes), N detections.

Training (per class): local features of the training images (:mod:`pydetect.ism.features`)
whose centre lies in an object box are clustered into a codebook
(:mod:`pydetect.ism.codebook`); every training feature is then matched to the codebook
again and each activated entry records an *occurrence*: the offset to the object centre
and the object scale, in units of the feature scale (plus the box's figure-ground patch).
Optionally (``discriminative=True``) each entry is weighted by how much more often it is
activated on objects than on the background of the same images, p(object | entry) with
balanced priors, a simple discriminative codebook weighting in the spirit of Fritz et al.
(ICCV 2005) and Maji & Malik (CVPR 2009); Leibe's original ISM uses no negatives.

Detection: test features activate entries (NGC above ``activation_threshold``), every
activated occurrence casts a vote ``(x, y, scale)`` of weight
``p(entry | feature) * p(occurrence | entry)`` (C++), the maxima of the vote density are
found by scale-adaptive (balloon) mean-shift (C++), each hypothesis scores its vote mass
and becomes a box of the training aspect ratio; overlapping boxes are suppressed by NMS.
With ``segment=True`` the figure-ground patches of the supporting votes are
back-projected into a per-pixel figure probability and each detection carries a mask.

References
----------
B. Leibe, A. Leonardis, B. Schiele. "Robust Object Detection with Interleaved
Categorization and Segmentation". IJCV 77(1-3):259-289, 2008.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from tqdm.auto import tqdm

from pydetect import ops
from pydetect._params import Bool, Choice, Fraction, Int, NonNegative, Optional, Positive, Sequence
from pydetect._validation import as_image, check_image_size
from pydetect.detectors.base import BaseDetector
from pydetect.ism import codebook as cb, features as ft
from pydetect.ism.voting import accumulate_votes, bin_seeds, mean_shift
from pydetect.structures import Detections

__all__ = ["ImplicitShapeModel"]


class _ClassModel:
    """The fitted codebook and occurrences of one class (plain arrays and numbers)."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def _dataset_items(dataset):
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a sequence of (image, target) pairs, got {type(dataset).__name__}")
    class_names = getattr(dataset, "class_names", None)
    if class_names is None:
        raise TypeError("dataset must have a class_names attribute (a pydetect.data.DetectionDataset)")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    return list(class_names)


def _target_arrays(target, i):
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise ValueError(f"target {i} must be a dict with 'boxes' and 'labels'")
    boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4)
    labels = np.asarray(target["labels"], np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"target {i}: {len(boxes)} boxes but {len(labels)} labels")
    # Degenerate boxes (no area) cannot give an object scale: they are ignored.
    ignore = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    for key in ("iscrowd", "difficult"):
        if key in target:
            ignore |= np.asarray(target[key], bool).reshape(-1)
    return boxes, labels, ignore


class ImplicitShapeModel(BaseDetector):
    """Implicit Shape Model: a codebook of local parts voting for the object centre and scale.

    Parameters
    ----------
    detector : {"dog", "harris-laplace", "dense"}
        Interest points: Difference-of-Gaussians (``cv2.SIFT`` keypoints), Harris-Laplace
        (:func:`pydetect.ism.features.harris_laplace`) or a dense multi-scale grid
        (``dense_scales``, spacing ``dense_step * scale``).
    descriptor : {"patch", "sift"}
        Zero-mean unit-norm grey patches compared by NGC, or SIFT compared by Euclidean
        distance.
    patch_size : int
        Side of the resampled patch.
    patch_factor : float
        Patch half-size in units of the feature scale.
    dense_scales : tuple of float
        Feature scales (pixels, after ``upscale``) of the dense grid.
    dense_step : float
    min_contrast : float
        Patches with a grey standard deviation below this (0-255) are dropped.
    upscale : float
        Images are resized by this factor before feature extraction (small objects).
    polarity_invariant : bool
        Flip patches to a canonical polarity (centre brighter than surround), for classes
        that appear both dark on light and light on dark.
    cluster_threshold : float
        Average-link cut-off: NGC (patch) or Euclidean distance (SIFT); 0.85 gave the best AP50
        of the cut-offs tried (benchmarks/RESULTS.md, "Parameter evidence (moved from the
        docstrings)").
    activation_threshold : float or None
        Match cut-off (same units); default ``cluster_threshold``.
    max_matches : int
        At most this many activated entries per feature.
    max_agglomerative : int
        Above this many training features the codebook is built by k-means seeded with
        the agglomerative clusters of a subset.
    max_train_features : int
        Object features per class used for clustering (a random subset above this).
    discriminative : bool
        Weight entries by p(object | entry) estimated against background features of the
        training images (and, with several classes, the other classes' object features).
    bandwidth_xy, bandwidth_scale : float
        Balloon mean-shift half-widths, relative to the hypothesis scale; bandwidth_xy 0.15 gave
        the best AP50 of the widths tried (benchmarks/RESULTS.md, "Parameter evidence (moved
        from the docstrings)").
    min_score : float
        Hypotheses with less vote mass are dropped.
    max_seeds : int
        Mean-shift starts from the weighted means of the ``max_seeds`` heaviest
        window-sized bins of votes.
    nms_iou : float
        IoU above which the weaker of two detections is suppressed.
    max_detections : int
    segment : bool
        Add per-detection ``masks`` (top-down segmentation) to the detections.
    random_state : int
    progress : bool, default True
        Progress bars while fitting (on datasets of 20 images or more).

    Attributes
    ----------
    class_names_ : list of str
    models_ : dict
        Label -> fitted codebook and occurrences of that class.
    fit_time_ : float
        Seconds spent in :meth:`fit`.

    Examples
    --------
    >>> ism = ImplicitShapeModel().fit(dataset)  # doctest: +SKIP
    >>> dets = ism.predict(image)                # doctest: +SKIP
    >>> info = ism.explain(image, dets[0])       # doctest: +SKIP
    """

    def __init__(self, *, detector="dog", descriptor="patch", patch_size=15, patch_factor=2.5,
                 dense_scales=(3.0, 4.5, 6.75, 10.0), dense_step=1.0, min_contrast=4.0,
                 upscale=1.0, polarity_invariant=False, cluster_threshold=0.85,
                 activation_threshold=None, max_matches=5,
                 max_agglomerative=3000, max_train_features=20000, discriminative=True,
                 bandwidth_xy=0.15, bandwidth_scale=0.3, min_score=0.05, max_seeds=400, nms_iou=0.3,
                 max_detections=50, segment=False, random_state=0, progress=True):
        self.detector = detector
        self.descriptor = descriptor
        self.patch_size = patch_size
        self.patch_factor = patch_factor
        self.dense_scales = dense_scales
        self.dense_step = dense_step
        self.min_contrast = min_contrast
        self.upscale = upscale
        self.polarity_invariant = polarity_invariant
        self.cluster_threshold = cluster_threshold
        self.activation_threshold = activation_threshold
        self.max_matches = max_matches
        self.max_agglomerative = max_agglomerative
        self.max_train_features = max_train_features
        self.discriminative = discriminative
        self.bandwidth_xy = bandwidth_xy
        self.bandwidth_scale = bandwidth_scale
        self.min_score = min_score
        self.max_seeds = max_seeds
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.segment = segment
        self.random_state = random_state
        self.progress = progress

    # Parameters ---------------------------------------------------------------------
    _PARAMS = {
        "detector": Choice("dog", "harris-laplace", "dense"),
        "descriptor": Choice("patch", "sift"),
        "patch_size": Int(minimum=3),
        "patch_factor": Positive(),
        "dense_scales": Sequence(Positive(), min_length=1, of="positive numbers"),
        "dense_step": Positive(),
        "min_contrast": NonNegative(),
        "upscale": Positive(),
        "polarity_invariant": Bool(),
        "cluster_threshold": NonNegative(),
        "activation_threshold": Optional(NonNegative()),
        "max_matches": Int(minimum=1),
        "max_agglomerative": Int(minimum=2),
        "max_train_features": Int(minimum=2),
        "discriminative": Bool(),
        "bandwidth_xy": Positive(),
        "bandwidth_scale": Positive(),
        "min_score": NonNegative(),
        "max_seeds": Int(minimum=1),
        "nms_iou": Fraction(),
        "max_detections": Int(minimum=1),
        "segment": Bool(),
        "random_state": Int(minimum=0),
        "progress": Bool(),
    }

    def _check_param_combinations(self):
        if self.descriptor != "patch":
            return
        # A similarity for patches (normalised correlation, at most 1), a distance for SIFT.
        for name in ("cluster_threshold", "activation_threshold"):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ValueError(f"{name} must be <= 1 with descriptor='patch' (a normalised "
                                 f"correlation), got {value}")

    @property
    def _metric(self):
        return "ngc" if self.descriptor == "patch" else "euclidean"

    @property
    def _activation(self):
        return self.cluster_threshold if self.activation_threshold is None else self.activation_threshold

    # Features -----------------------------------------------------------------------
    def _features(self, image):
        """Points (F, 3) in original-image pixels, descriptors (F, D), upscaled grey image."""
        gray = ft.to_gray(image)
        if self.upscale != 1.0:
            h, w = gray.shape
            check_image_size(h * self.upscale, w * self.upscale, f"the {w}x{h} image upscaled by {self.upscale:g}")
            size = (max(1, round(w * self.upscale)), max(1, round(h * self.upscale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
        pts = ft.detect_keypoints(gray, detector=self.detector, scales=self.dense_scales,
                                  step=self.dense_step)
        pts, desc = ft.describe(gray, pts, descriptor=self.descriptor, patch_size=self.patch_size,
                                patch_factor=self.patch_factor, min_contrast=self.min_contrast,
                                polarity_invariant=bool(self.polarity_invariant))
        # Back to original pixels: pixel centres map as (x + 0.5) / f - 0.5.
        f = float(self.upscale)
        pts = np.column_stack([(pts[:, 0] + 0.5) / f - 0.5, (pts[:, 1] + 0.5) / f - 0.5, pts[:, 2] / f])
        return pts, desc

    # Fitting ------------------------------------------------------------------------
    def fit(self, dataset, class_name=None):
        """Learns one codebook with occurrences per class.

        Parameters
        ----------
        dataset : DetectionDataset
            A sequence of ``(image, target)`` with ``class_names``; targets hold ``boxes``
            (K, 4) xyxy and ``labels`` (K,); ``iscrowd`` / ``difficult`` boxes are ignored.
        class_name : str, optional
            Learn only this class (default: every class with at least one box).

        Returns
        -------
        self
        """
        self._validate_params()
        class_names = _dataset_items(dataset)
        if class_name is not None:
            if class_name not in class_names:
                raise ValueError(f"class_name {class_name!r} is not one of {class_names}")
            wanted = {class_names.index(class_name)}
        else:
            wanted = None
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.random_state)
        pos = {}   # label -> list of (points, desc, boxes-per-feature)
        neg_desc = []
        for i in tqdm(range(len(dataset)), desc="ISM features", leave=False,
                      disable=not self.progress or len(dataset) < 20):
            image, target = dataset[i]
            image = as_image(image, f"dataset image {i}")
            boxes, labels, ignore = _target_arrays(target, i)
            if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise ValueError(f"target {i}: labels must index class_names (0..{len(class_names) - 1})")
            pts, desc = self._features(image)
            if not len(pts):
                continue
            inside = ((pts[:, None, 0] >= boxes[None, :, 0]) & (pts[:, None, 0] < boxes[None, :, 2])
                      & (pts[:, None, 1] >= boxes[None, :, 1]) & (pts[:, None, 1] < boxes[None, :, 3]))
            background = ~inside.any(1) if len(boxes) else np.ones(len(pts), bool)
            nb = np.flatnonzero(background)
            if len(nb) > 200:
                nb = rng.choice(nb, 200, replace=False)
            neg_desc.append(desc[nb])
            for k in range(len(boxes)):
                if ignore[k] or (wanted is not None and labels[k] not in wanted):
                    continue
                sel = np.flatnonzero(inside[:, k])
                if len(sel):
                    box_of = np.repeat(boxes[k:k + 1], len(sel), 0)
                    pos.setdefault(int(labels[k]), []).append((pts[sel], desc[sel], box_of))
        if not pos:
            raise ValueError("no training object yielded features: check the boxes and the feature parameters")
        neg = np.concatenate(neg_desc) if neg_desc else np.zeros((0, 1), np.float32)
        self.class_names_ = class_names
        self.models_ = {}
        for label in tqdm(sorted(pos), desc="ISM codebooks", leave=False,
                          disable=not self.progress or len(pos) < 3):
            # Negatives: the background plus (multi-class) a sample of the other classes'
            # object features, so that an entry shared by every class weighs little.
            others = [p[1] for k, parts in pos.items() if k != label for p in parts]
            class_neg = neg
            if others:
                others = np.concatenate(others)
                if len(others) > len(neg):
                    others = others[rng.choice(len(others), max(len(neg), 1), replace=False)]
                class_neg = np.concatenate([neg, others]) if len(neg) else others
            self.models_[label] = self._fit_class(pos[label], class_neg, rng)
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _fit_class(self, parts, neg, rng):
        pts = np.concatenate([p[0] for p in parts])
        desc = np.concatenate([p[1] for p in parts])
        boxes = np.concatenate([p[2] for p in parts])
        train = desc
        if len(train) > self.max_train_features:
            train = train[rng.choice(len(train), self.max_train_features, replace=False)]
        centres, sizes = cb.build_codebook(train, metric=self._metric, threshold=self.cluster_threshold,
                                           max_agglomerative=self.max_agglomerative,
                                           random_state=self.random_state)
        mp, me, mw = cb.match(desc, centres, metric=self._metric, threshold=self._activation,
                              max_matches=self.max_matches)
        feat_of = np.repeat(np.arange(len(desc)), np.diff(mp))
        # Occurrences, grouped by entry.
        order = np.argsort(me, kind="stable")
        f = feat_of[order]
        entry = me[order]
        b = boxes[f]
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        size = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        s = pts[f, 2]
        occ = np.column_stack([(cx - pts[f, 0]) / s, (cy - pts[f, 1]) / s, size / s])
        n_entries = len(centres)
        occ_count = np.bincount(entry, minlength=n_entries)
        occ_ptr = np.concatenate([[0], np.cumsum(occ_count)]).astype(np.int64)
        occ_weight = 1.0 / np.maximum(occ_count[entry], 1)
        entry_weight = np.ones(n_entries)
        if self.discriminative and len(neg):
            act_pos = np.bincount(me, weights=mw, minlength=n_entries) / max(len(desc), 1)
            _, nme, nmw = cb.match(neg, centres, metric=self._metric, threshold=self._activation,
                                     max_matches=self.max_matches)
            act_neg = np.bincount(nme, weights=nmw, minlength=n_entries) / max(len(neg), 1)
            entry_weight = act_pos / np.maximum(act_pos + act_neg, 1e-12)
        occ_weight = occ_weight * entry_weight[entry]
        # Figure-ground patch of each occurrence (the box interior).
        fg = ft.box_figure_ground(pts[f], b, size=8, patch_factor=self.patch_factor)
        obj = np.unique(boxes, axis=0)
        w, h = obj[:, 2] - obj[:, 0], obj[:, 3] - obj[:, 1]
        ok = (w > 0) & (h > 0)
        sizes_obj = np.sqrt(w[ok] * h[ok])
        return _ClassModel(centres=centres, entry_sizes=sizes, entry_weight=entry_weight,
                           occ_ptr=occ_ptr, occurrences=occ.astype(np.float64),
                           occ_weight=occ_weight.astype(np.float64), occ_entry=entry,
                           figure_ground=fg, aspect=float(np.median(w[ok] / h[ok])),
                           scale_range=(float(sizes_obj.min()) / 2.0, float(sizes_obj.max()) * 2.0))

    # Persistence: each class model is its dict of arrays and numbers.
    def _get_state(self) -> dict:
        return dict(super()._get_state(), models_={k: vars(m) for k, m in self.models_.items()})

    def _set_state(self, state: dict) -> None:
        vars(self).update(state, models_={k: _ClassModel(**m) for k, m in state["models_"].items()})

    # Detection ----------------------------------------------------------------------
    def _votes(self, model, pts, desc):
        mp, me, mw = cb.match(desc, model.centres, metric=self._metric, threshold=self._activation,
                              max_matches=self.max_matches)
        votes, weights, vf, vo = accumulate_votes(pts, mp, me, mw, model.occ_ptr, model.occurrences,
                                                  model.occ_weight)
        lo, hi = model.scale_range
        keep = (votes[:, 2] >= lo) & (votes[:, 2] <= hi) & (weights > 0)
        return votes[keep], weights[keep], vf[keep], vo[keep]

    def _hypotheses(self, votes, weights):
        if not len(votes):
            return np.zeros((0, 3)), np.zeros(0)
        seeds = bin_seeds(votes, weights, bandwidth_xy=self.bandwidth_xy, bandwidth_scale=self.bandwidth_scale,
                          min_mass=self.min_score / 4.0)[:self.max_seeds]
        modes, scores, _ = mean_shift(votes, weights, seeds, bandwidth_xy=self.bandwidth_xy,
                                      bandwidth_scale=self.bandwidth_scale, min_score=self.min_score)
        return modes, scores

    def _boxes(self, model, modes):
        s = modes[:, 2]
        w, h = s * np.sqrt(model.aspect), s / np.sqrt(model.aspect)
        return np.column_stack([modes[:, 0] - w / 2, modes[:, 1] - h / 2, modes[:, 0] + w / 2, modes[:, 1] + h / 2])

    def _support(self, votes, mode):
        hxy, hs = self.bandwidth_xy * mode[2], self.bandwidth_scale * mode[2]
        d2 = (((votes[:, 0] - mode[0]) ** 2 + (votes[:, 1] - mode[1]) ** 2) / hxy**2
              + ((votes[:, 2] - mode[2]) / hs) ** 2)
        return d2 <= 1.0

    def _segment(self, model, shape, pts, votes, weights, vf, vo, mode):
        """Figure probability (H, W): back-projected figure-ground patches of the support."""
        hgt, wid = shape
        fig = np.zeros((hgt, wid), np.float64)
        tot = np.zeros((hgt, wid), np.float64)
        for i in np.flatnonzero(self._support(votes, mode)):
            x, y, s = pts[vf[i]]
            r = self.patch_factor * s
            x0, y0 = int(np.floor(x - r)), int(np.floor(y - r))
            n = max(int(np.ceil(2 * r)), 1)
            patch = cv2.resize(model.figure_ground[vo[i]].astype(np.float32), (n, n),
                               interpolation=cv2.INTER_NEAREST)
            xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + n, wid), min(y0 + n, hgt)
            if xa >= xb or ya >= yb:
                continue
            fig[ya:yb, xa:xb] += weights[i] * patch[ya - y0:yb - y0, xa - x0:xb - x0]
            tot[ya:yb, xa:xb] += weights[i]
        return np.divide(fig, tot, out=np.zeros_like(fig), where=tot > 0).astype(np.float32)

    def predict(self, image):
        """Detects the objects of every fitted class in one image.

        Parameters
        ----------
        image : uint8 or float array, shape (H, W) or (H, W, 3)

        Returns
        -------
        Detections
            By decreasing score (vote mass), with extra fields ``hypotheses`` (N, 3) — the
            mean-shift mode ``(x, y, scale)`` of each detection — and, with
            ``segment=True``, ``masks`` (N, H, W) bool (figure probability > 0.5).
        """
        self._check_fitted()
        image = as_image(image)
        pts, desc = self._features(image)
        parts = []
        for label, model in self.models_.items():
            votes, weights, vf, vo = self._votes(model, pts, desc)
            modes, scores = self._hypotheses(votes, weights)
            boxes = ops.clip_boxes(self._boxes(model, modes), image.shape[:2])
            keep = ops.nms(boxes.astype(np.float32), scores.astype(np.float32), self.nms_iou)[:self.max_detections]
            fields = dict(boxes=boxes[keep], scores=scores[keep], labels=np.full(len(keep), label, np.int64),
                          hypotheses=modes[keep].astype(np.float32))
            if self.segment:
                masks = [self._segment(model, image.shape[:2], pts, votes, weights, vf, vo, m) > 0.5
                         for m in modes[keep]]
                fields["masks"] = np.array(masks, bool).reshape(len(keep), *image.shape[:2])
            parts.append(Detections(**fields))
        dets = Detections.concat(parts).sorted()
        return dets[:self.max_detections]

    def explain(self, image, detection):
        """The features and votes that support one detection.

        Parameters
        ----------
        image : array, shape (H, W) or (H, W, 3)
            The image the detection came from.
        detection : Detections of length 1
            One detection returned by :meth:`predict` on ``image`` (``dets[i]``).

        Returns
        -------
        dict
            ``hypothesis`` (3,) ``(x, y, scale)``; ``features`` (F, 3) the supporting
            features; ``descriptors`` (F, D); ``votes`` (V, 3), ``weights`` (V,),
            ``vote_feature`` (V,) index into ``features``, ``occurrence`` (V,) and
            ``entry`` (V,) codebook indices; ``figure`` (H, W) float32 figure probability
            (top-down segmentation).
        """
        self._check_fitted()
        image = as_image(image)
        if not isinstance(detection, Detections) or len(detection) != 1 or "hypotheses" not in detection.extra_fields:
            raise ValueError("detection must be one detection of predict(): dets[i], a Detections of length 1")
        label = int(detection.labels[0])
        if label not in self.models_:
            raise ValueError(f"detection label {label} is not a fitted class")
        model = self.models_[label]
        mode = detection.hypotheses[0].astype(np.float64)
        pts, desc = self._features(image)
        votes, weights, vf, vo = self._votes(model, pts, desc)
        sup = self._support(votes, mode)
        feats, inv = np.unique(vf[sup], return_inverse=True)
        figure = self._segment(model, image.shape[:2], pts, votes, weights, vf, vo, mode)
        return {"hypothesis": mode, "features": pts[feats], "descriptors": desc[feats], "votes": votes[sup],
                "weights": weights[sup], "vote_feature": inv.reshape(-1), "occurrence": vo[sup],
                "entry": model.occ_entry[vo[sup]], "figure": figure}
