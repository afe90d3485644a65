"""Training attentional cascades (Viola & Jones, IJCV 2004) as opencv_traincascade does.

Each stage is a boosted classifier over Haar-like features (:class:`HaarFeatures`,
:class:`AdaBoost`). Weak trees are added until the stage threshold that keeps ``min_hit_rate``
of the current positives lets at most ``max_false_alarm_rate`` of the current negatives
through. The negatives of every stage are *hard negatives*: windows of the background images
that the cascade trained so far still accepts, found by scanning the backgrounds at all
scales with the C++ detector (:class:`CascadeDetector`). Positives the cascade already rejects
are dropped, as OpenCV's ``updateTrainingSet`` does. After each stage the cascade is written
to ``checkpoint_dir`` (OpenCV XML plus a JSON log), and ``resume=True`` continues from there.

Differences from opencv_traincascade, on purpose:

- ``max_features`` (default 30,000): each stage boosts over a random subset of the feature
  bank (a fresh subset per stage, seeded), so that memory stays near
  ``(num_pos + num_neg) * max_features * 12`` bytes; ``None`` uses every feature as OpenCV does.
- Windows with a pixel standard deviation <= 10 over OpenCV's normalisation rectangle are never
  used: OpenCV's detector rejects them before the first stage, so they carry no information.
- Positive augmentation (mirror, small shifts and scales, gain and offset) is built in.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import cv2
import numpy as np
from tqdm.auto import tqdm

from pydetect._io import atomic_write
from pydetect._validation import (check_choice, check_fraction, check_int, check_positive, check_scale_factor,
                                  to_numpy)
from pydetect.cascade.boosting import AdaBoost
from pydetect.cascade.detector import CascadeDetector, flat_windows
from pydetect.cascade.haar_features import HaarFeatures
from pydetect.cascade.model import Cascade
from pydetect.cascade.pyramid import grey_image, pyramid_levels, pyramid_scales

__all__ = ["train_cascade", "augment_positives", "CascadeTrainingLog"]

THRESHOLD_EPS = 1e-5  # OpenCV subtracts it from stage thresholds when it loads a cascade


class CascadeTrainingLog(list):
    """Per-stage records (dicts) of a training run: weak count, hit rate, false-alarm rate,
    negative acceptance ratio, seconds."""


# ----------------------------------------------------------------------------- helpers
def augment_positives(positives, n_out, *, seed=0, flip=True, max_shift=1.0, max_scale=0.05,
                      gain=(0.8, 1.2), offset=20.0):
    """Random variants of positive windows: mirror, shift, scale, grey-level gain and offset.

    Parameters
    ----------
    positives : (N, h, w) uint8
    n_out : int
        Number of windows to return. The originals come first (and their mirrors, if
        ``flip``), then random variants of randomly chosen originals.
    seed : int
    flip : bool
        Mirror left-right (for left-right symmetric objects such as faces).
    max_shift : float
        Largest shift in pixels, in each direction.
    max_scale : float
        Largest relative change of scale.
    gain : (float, float)
        Range of the contrast gain.
    offset : float
        Largest brightness offset in grey levels.

    Returns
    -------
    (n_out, h, w) uint8 ndarray
    """
    pos = np.asarray(positives)
    n_out = check_int(n_out, "n_out", minimum=0)
    rng = np.random.default_rng(seed)
    base = [pos, pos[:, :, ::-1]] if flip else [pos]
    base = np.ascontiguousarray(np.concatenate(base))
    if n_out <= len(base):
        return base[:n_out].copy()
    n, h, w = pos.shape
    extra = []
    for _ in range(n_out - len(base)):
        src = base[rng.integers(len(base))]
        s = 1.0 + rng.uniform(-max_scale, max_scale)
        tx, ty = rng.uniform(-max_shift, max_shift, size=2)
        m = np.array([[s, 0, (1 - s) * (w - 1) / 2 + tx], [0, s, (1 - s) * (h - 1) / 2 + ty]])
        out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        g = rng.uniform(*gain)
        o = rng.uniform(-offset, offset)
        extra.append(np.clip(np.rint(out.astype(np.float64) * g + o), 0, 255).astype(np.uint8))
    return np.concatenate([base, np.stack(extra)])


class _NegativeMiner:
    """Draws negative windows that the current cascade accepts from background images."""

    def __init__(self, backgrounds, window_hw, scale_factor, seed):
        self.backgrounds = backgrounds
        self.window_hw = window_hw
        self.scale_factor = scale_factor
        self.rng = np.random.default_rng(seed)

    def _levels(self, img):
        """(scale, level) pairs: the detector's own pyramid (:func:`pyramid_levels`)."""
        wh, ww = self.window_hw
        return zip(*pyramid_levels(img, (ww, wh), self.scale_factor))

    def random_windows(self, count):
        """Random windows of random pyramid levels (the first stage accepts everything)."""
        wh, ww = self.window_hw
        out, consumed = [], 0
        per_image = max(1, math.ceil(count / max(len(self.backgrounds), 1)))
        attempts = 0
        while len(out) < count and attempts < 50:
            attempts += 1
            for b in self.rng.permutation(len(self.backgrounds)):
                levels = list(self._levels(self.backgrounds[b]))
                for _ in range(per_image):
                    s, level = levels[self.rng.integers(len(levels))]
                    lh, lw = level.shape
                    y = int(self.rng.integers(lh - wh + 1))
                    x = int(self.rng.integers(lw - ww + 1))
                    win = level[y:y + wh, x:x + ww]
                    consumed += 1
                    if not flat_windows(win[None])[0]:
                        out.append(win.copy())
                if len(out) >= count:
                    break
        return np.asarray(out[:count], np.uint8).reshape(-1, wh, ww), consumed

    def hard_windows(self, cascade, count, max_per_image):
        """Windows the cascade accepts, at most ``max_per_image`` per image: the exact
        pixels the detector's scan accepted (:meth:`CascadeDetector.accepted_windows`).

        Returns (windows, window positions scanned, windows accepted) over the images visited.
        """
        wh, ww = self.window_hw
        detector = CascadeDetector(cascade)
        found, scanned, accepted = [], 0, 0
        for b in self.rng.permutation(len(self.backgrounds)):
            wins, _, positions = detector.accepted_windows(self.backgrounds[b], scale_factor=self.scale_factor,
                                                           return_scanned=True)
            scanned += positions
            accepted += len(wins)
            if len(wins) == 0:
                continue
            found.extend(wins[self.rng.permutation(len(wins))[:max_per_image]])
            if len(found) >= count:
                break
        return np.asarray(found[:count], np.uint8).reshape(-1, wh, ww), scanned, accepted


def _stage_threshold(pos_scores, min_hit_rate):
    """OpenCV's rule: the score of sorted positive number int((1 - min_hit_rate) * P)."""
    s = np.sort(pos_scores.astype(np.float32))
    idx = int((1.0 - min_hit_rate) * len(s))
    return s[min(idx, len(s) - 1)]


# ----------------------------------------------------------------------------- training
def train_cascade(positives, backgrounds, *, num_stages=20, min_hit_rate=0.995,
                  max_false_alarm_rate=0.5, max_weak_count=100, mode="basic", boost="gentle",
                  max_depth=1, weight_trim_rate=0.95, num_pos=None, num_neg=None,
                  max_features=30000, augment=True, scale_factor=1.2,
                  acceptance_ratio_break_value=None, time_limit=None, checkpoint_dir=None,
                  resume=False, random_state=0, progress=True, return_log=False):
    """Trains a Haar cascade; returns a :class:`~pydetect.cascade.Cascade`.

    Parameters
    ----------
    positives : (N, h, w) uint8 array
        Object windows, already cropped and scaled to the detection window (h, w), with the
        margin the detector should see (OpenCV's samples: the object filling the window).
    backgrounds : sequence of (H, W) or (H, W, 3) uint8 images
        Images without the object, each at least (h, w); negatives are mined from them.
    num_stages : int, default 20
    min_hit_rate : float, default 0.995
        Fraction of the current positives each stage must keep.
    max_false_alarm_rate : float, default 0.5
        Fraction of the current negatives each stage may keep.
    max_weak_count : int, default 100
        Most weak trees per stage.
    mode : {"basic", "core", "all"}, default "basic"
        opencv_traincascade's Haar feature set.
    boost : {"gentle", "discrete", "real"}, default "gentle"
    max_depth : {1, 2}, default 1
    weight_trim_rate : float, default 0.95
    num_pos : int, optional
        Positives per stage (default: all, after augmentation).
    num_neg : int, optional
        Negatives per stage (default: as many as positives).
    max_features : int or None, default 30000
        Features boosted per stage (a random subset of the bank); None uses all.
    augment : bool or int, default True
        Augment the positives (mirror, shifts, scales, gain) up to ``num_pos`` windows
        (default: 4 times the given count); an int gives the number of windows.
    scale_factor : float, default 1.2
        Pyramid ratio when scanning backgrounds for negatives.
    acceptance_ratio_break_value : float, optional
        Stop when the fraction of scanned background windows the cascade accepts falls
        below this (default: ``max_false_alarm_rate ** num_stages``, OpenCV's required leaf
        false-alarm rate).
    time_limit : float, optional
        Seconds; no new stage is started after this. A resumed run counts the time the
        checkpoint records (the training time up to its last stage) towards it.
    checkpoint_dir : path, optional
        After every stage, ``cascade.xml`` (OpenCV format) and ``training.json`` are written
        there (atomically).
    resume : bool, default False
        Continue from the stages in ``checkpoint_dir``.
    random_state : int, default 0
    progress : bool, default True
        tqdm progress bar over stages, with the per-stage figures.
    return_log : bool, default False
        Also return the :class:`CascadeTrainingLog`.

    Returns
    -------
    Cascade or (Cascade, CascadeTrainingLog)

    Raises
    ------
    ValueError
        Positives of the wrong shape or dtype, no usable background, impossible rates,
        or no stage could be trained (e.g. the backgrounds yield no negatives).
    """
    pos = _check_positives(positives)
    h, w = pos.shape[1:]
    bgs = _check_backgrounds(backgrounds, (h, w))
    num_stages = check_int(num_stages, "num_stages", minimum=1)
    min_hit_rate = check_fraction(min_hit_rate, "min_hit_rate")
    max_false_alarm_rate = check_fraction(max_false_alarm_rate, "max_false_alarm_rate")
    if min_hit_rate == 0:
        raise ValueError("min_hit_rate must be > 0 (0 would keep no positive)")
    if max_false_alarm_rate in (0.0, 1.0):
        raise ValueError("max_false_alarm_rate must lie strictly between 0 and 1, got "
                         f"{max_false_alarm_rate}")
    max_weak_count = check_int(max_weak_count, "max_weak_count", minimum=1)
    check_choice(mode, "mode", ("basic", "core", "all"))
    check_choice(boost, "boost", ("gentle", "discrete", "real"))
    if check_int(max_depth, "max_depth", minimum=1) > 2:
        raise ValueError(f"max_depth must be 1 or 2, got {max_depth}")
    scale_factor = check_scale_factor(scale_factor)
    # Counts and limits are checked before any of them sizes an allocation or a loop.
    num_pos = None if num_pos is None else check_int(num_pos, "num_pos", minimum=1)
    num_neg = None if num_neg is None else check_int(num_neg, "num_neg", minimum=1)
    max_features = None if max_features is None else check_int(max_features, "max_features", minimum=1)
    weight_trim_rate = check_fraction(weight_trim_rate, "weight_trim_rate")
    if time_limit is not None:
        time_limit = check_positive(time_limit, "time_limit")
    if acceptance_ratio_break_value is not None:
        acceptance_ratio_break_value = check_fraction(acceptance_ratio_break_value, "acceptance_ratio_break_value")
    for b in bgs:  # a pyramid too deep for scale_factor fails now, not at the first mining
        pyramid_scales((w, h), b.shape[::-1], scale_factor)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")

    # positives: drop flat windows (the detector can never accept them), augment
    flat = flat_windows(pos)
    if flat.all():
        raise ValueError("every positive window has a grey-level deviation <= 10; OpenCV's "
                         "detector rejects such windows: use contrasted object crops")
    if flat.any():
        warnings.warn(f"dropping {int(flat.sum())} positives with a grey-level deviation <= 10 "
                      "(the detector rejects such windows)", stacklevel=2)
        pos = pos[~flat]
    if augment is not False and augment is not None:
        n_aug = 4 * len(pos) if augment is True else check_int(augment, "augment", minimum=1)
        if num_pos is not None:
            n_aug = max(n_aug, num_pos)
        pos = augment_positives(pos, n_aug, seed=random_state)
        pos = pos[~flat_windows(pos)]
    num_pos = len(pos) if num_pos is None else min(num_pos, len(pos))
    num_neg = num_pos if num_neg is None else num_neg
    if acceptance_ratio_break_value is None:
        acceptance_ratio_break_value = max_false_alarm_rate ** num_stages

    bank = HaarFeatures((h, w), mode=mode)
    cascade = Cascade.empty("HAAR", (w, h), max_depth=max_depth)
    log = CascadeTrainingLog()
    params = dict(num_stages=num_stages, min_hit_rate=min_hit_rate,
                  max_false_alarm_rate=max_false_alarm_rate, max_weak_count=max_weak_count,
                  mode=mode, boost=boost, max_depth=max_depth,
                  weight_trim_rate=weight_trim_rate, num_pos=num_pos, num_neg=num_neg,
                  max_features=max_features, window=[h, w], random_state=random_state)
    elapsed_before = 0.0
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if resume:
            cascade, log, elapsed_before = _load_checkpoint(checkpoint_dir, params, max_depth)

    miner = _NegativeMiner(bgs, (h, w), scale_factor, seed=[random_state, 7919, cascade.num_stages])
    start = time.perf_counter()
    bar = None
    if progress:

        bar = tqdm(total=num_stages, initial=cascade.num_stages, desc="cascade stages", unit="stage")
    stop_reason = f"{num_stages} stages trained"
    try:
        while cascade.num_stages < num_stages:
            s = cascade.num_stages
            if time_limit is not None and elapsed_before + time.perf_counter() - start > time_limit:
                stop_reason = f"time limit of {time_limit:g} s reached"
                break
            t0 = time.perf_counter()
            rng = np.random.default_rng([random_state, s])
            miner.rng = np.random.default_rng([random_state, 7919, s])  # resumable
            # positives the cascade still accepts
            stage_pos = pos[cascade.accepts(pos)]
            if len(stage_pos) == 0:
                stop_reason = "no positive passes the cascade any more"
                break
            stage_pos = stage_pos[rng.permutation(len(stage_pos))[:num_pos]]
            # hard negatives
            if not s:
                neg, scanned = miner.random_windows(num_neg)
                ratio = 1.0
            else:
                neg, scanned, accepted = miner.hard_windows(cascade, num_neg, max(1, math.ceil(num_neg / 8)))
                ratio = accepted / max(scanned, 1)
            if len(neg) < max(1, num_neg // 10):
                # OpenCV fails here ("Train dataset for temp stage can not be filled"); the
                # cascade so far is the result.
                stop_reason = (f"the backgrounds yield only {len(neg)} false positives (fewer "
                               f"than num_neg / 10 = {max(1, num_neg // 10)}): the cascade "
                               "rejects nearly every background window; add background images "
                               "for more stages")
                break
            if s and ratio <= acceptance_ratio_break_value:
                stop_reason = (f"negative acceptance ratio {ratio:.3g} <= "
                               f"{acceptance_ratio_break_value:.3g}")
                break
            if len(neg) < num_neg and s:
                warnings.warn(f"stage {s}: only {len(neg)} of {num_neg} negatives found in the "
                              "backgrounds; add background images for a stronger cascade",
                              stacklevel=2)
            # features
            if max_features is not None and max_features < len(bank):
                cols = np.sort(rng.choice(len(bank), size=int(max_features), replace=False))
            else:
                cols = np.arange(len(bank))
            windows = np.concatenate([stage_pos, neg])
            X = bank.compute(windows, features=cols, max_bytes=1 << 62)
            y = np.r_[np.ones(len(stage_pos), np.int8), -np.ones(len(neg), np.int8)]
            P = len(stage_pos)
            booster = AdaBoost(max_weak_count, algorithm=boost, max_depth=max_depth,
                               weight_trim_rate=weight_trim_rate)
            thr, hit, fa = 0.0, 1.0, 1.0
            for fitted in booster.iter_fit(X, y):
                scores = fitted.train_scores_
                thr = _stage_threshold(scores[:P], min_hit_rate)
                passed = scores.astype(np.float32) >= thr - np.float32(THRESHOLD_EPS)
                hit = float(passed[:P].mean())
                fa = float(passed[P:].mean())
                if fa <= max_false_alarm_rate:
                    break
            cascade = cascade.append_stage(thr, booster.trees_, bank.rects[cols], bank.weights[cols],
                                           bank.tilted[cols])
            record = dict(stage=s, weak=len(booster.trees_), num_pos=P, num_neg=len(neg),
                          hit_rate=hit, false_alarm=fa, acceptance_ratio=ratio,
                          windows_scanned=int(scanned), seconds=time.perf_counter() - t0)
            log.append(record)
            if checkpoint_dir is not None:
                _save_checkpoint(checkpoint_dir, cascade, log, params, elapsed_before + time.perf_counter() - start)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(weak=record["weak"], HR=f"{hit:.3f}", FA=f"{fa:.3f}",
                                acc=f"{ratio:.2g}")
    finally:
        if bar is not None:
            bar.close()
    if not cascade.num_stages:
        raise ValueError(f"no stage could be trained: {stop_reason}")
    log.stop_reason = stop_reason
    return (cascade, log) if return_log else cascade


def _check_positives(positives):
    arr, _ = to_numpy(positives, "positives")
    if arr.dtype != np.uint8:
        raise TypeError(f"positives must be uint8 windows, got dtype {arr.dtype}; convert with "
                        "np.rint(x * 255).astype(np.uint8) for images in [0, 1]")
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"positives must have shape (N, h, w) with N >= 1, got {tuple(arr.shape)}; "
                         "crop and resize every object to the same window size first")
    if arr.shape[1] < 3 or arr.shape[2] < 3:
        raise ValueError(f"the window must be at least 3x3, got {arr.shape[1]}x{arr.shape[2]}")
    return np.ascontiguousarray(arr)


def _check_backgrounds(backgrounds, window_hw):
    if backgrounds is None or isinstance(backgrounds, (str, bytes)):
        raise TypeError("backgrounds must be a sequence of images")
    out = []
    for i, b in enumerate(backgrounds):
        img = grey_image(b, f"backgrounds[{i}]")
        if img.shape[0] >= window_hw[0] and img.shape[1] >= window_hw[1]:
            out.append(np.ascontiguousarray(img))
    if not out:
        raise ValueError(f"no background image at least as large as the {window_hw[1]}x"
                         f"{window_hw[0]} window: pass images without the object to mine "
                         "negatives from")
    return out


def _save_checkpoint(directory, cascade, log, params, seconds):
    """``seconds``: the training time so far, across resumes (the time budget's clock)."""
    cascade.save(os.path.join(directory, "cascade.xml"))
    state = {"params": params, "log": list(log), "seconds": seconds}
    with atomic_write(os.path.join(directory, "training.json"), "w") as f:
        json.dump(state, f, indent=1)


def _load_checkpoint(directory, params, max_depth):
    path_xml = os.path.join(directory, "cascade.xml")
    path_json = os.path.join(directory, "training.json")
    if not (os.path.exists(path_xml) and os.path.exists(path_json)):
        h, w = params["window"]
        return Cascade.empty("HAAR", (w, h), max_depth=max_depth), CascadeTrainingLog(), 0.0
    with open(path_json) as f:
        state = json.load(f)
    saved = state.get("params", {})
    changed = [k for k in params if k != "num_stages" and saved.get(k) != params[k]]
    if changed:
        raise ValueError(f"cannot resume from {directory}: parameters differ from the checkpoint "
                         f"({', '.join(f'{k}: {saved.get(k)!r} -> {params[k]!r}' for k in changed)})")
    cascade = Cascade.load(path_xml)
    cascade.max_depth = max_depth
    log = CascadeTrainingLog(state.get("log", [])[:cascade.num_stages])
    # Checkpoints written before the time was recorded resume with a fresh budget.
    return cascade, log, float(state.get("seconds", 0.0))
