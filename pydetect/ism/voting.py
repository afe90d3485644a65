"""Probabilistic Hough voting and scale-adaptive mean-shift of the Implicit Shape Model.

Glossary of shapes: F features, E codebook entries, O occurrences, M feature-to-entry
matches, V votes, S seeds, K modes (object hypotheses).

A vote is a point ``(x, y, s)``: the object centre and object scale a matched feature
predicts, with weight ``p(entry | feature) * p(occurrence | entry)``. Hypotheses are the
maxima of the vote density, found by mean-shift with the scale-adaptive "balloon" kernel
of Leibe, Leonardis & Schiele (IJCV 2008, sec. 5.1): the search window at an estimate of
scale ``s`` has spatial half-width ``bandwidth_xy * s`` and scale half-width
``bandwidth_scale * s``, so that large objects tolerate proportionally larger spreads.

References
----------
B. Leibe, A. Leonardis, B. Schiele. "Robust Object Detection with Interleaved
Categorization and Segmentation". IJCV 77(1-3):259-289, 2008.
D. Comaniciu, P. Meer. "Mean shift: a robust approach toward feature space analysis".
PAMI 24(5), 2002.
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import (as_float_array, check_choice, check_int, check_positive,
                                  check_real, to_numpy)
from pydetect.ops import _ism

__all__ = ["accumulate_votes", "mean_shift", "bin_seeds"]

_KERNELS = ("flat", "epanechnikov")


def _as_ptr(x, n: int, name: str, total: int) -> np.ndarray:
    arr, _ = to_numpy(x, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.shape != (n + 1,):
        raise ValueError(f"{name} must have shape ({n + 1},), got {tuple(arr.shape)}")
    if arr[0] != 0 or arr[-1] != total or np.any(np.diff(arr) < 0):
        raise ValueError(f"{name} must be non-decreasing from 0 to {total}")
    return arr


def _as_points(x, name: str, dtype=None) -> np.ndarray:
    arr, _ = as_float_array(x, name, dtype=dtype)
    if arr.size == 0 and arr.ndim <= 2:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) with columns (x, y, scale), got {tuple(arr.shape)}")
    return arr


def _as_weights(weights, v: np.ndarray) -> np.ndarray:
    """(V,) vote weights, >= 0, default ones; their sum must be finite (the means of
    weighted votes would overflow)."""
    if weights is None:
        return np.ones(v.shape[0], v.dtype)
    w, _ = as_float_array(weights, "weights", dtype=v.dtype)
    if w.shape != (v.shape[0],):
        raise ValueError(f"weights must have shape ({v.shape[0]},) to match the votes, got {w.shape}")
    if w.size and w.min() < 0:
        raise ValueError("weights must be >= 0")
    if not np.isfinite(w.sum(dtype=np.float64)):
        raise ValueError("weights must have a finite sum, got an overflow to infinity")
    return w


def accumulate_votes(features, match_ptr, match_entry, match_weight, occ_ptr, occurrences,
                     occ_weight):
    """Casts the probabilistic Hough votes of matched features (C++, parallel).

    Feature ``f`` activates entries ``match_entry[match_ptr[f]:match_ptr[f+1]]`` with
    weights ``p(entry | feature)``; entry ``e`` owns occurrences
    ``occurrences[occ_ptr[e]:occ_ptr[e+1]]`` with weights ``p(occurrence | entry)``.
    Every (feature, entry, occurrence) triple casts one vote::

        centre = (x_f, y_f) + s_f * (ox, oy),   scale = s_f * os,
        weight = p(entry | feature) * p(occurrence | entry).

    Parameters
    ----------
    features : array, shape (F, 3)
        ``(x, y, scale)`` of the test features.
    match_ptr : int array, shape (F + 1,)
    match_entry : int array, shape (M,)
    match_weight : array, shape (M,)
    occ_ptr : int array, shape (E + 1,)
    occurrences : array, shape (O, 3)
        ``(ox, oy, os)``: offset to the object centre and object scale, in units of the
        feature scale at training time.
    occ_weight : array, shape (O,)

    Returns
    -------
    votes : ndarray, shape (V, 3)
        ``(x, y, scale)``, in the float dtype of ``features`` (float32 or float64).
    weights : ndarray, shape (V,)
    vote_feature : int64 ndarray, shape (V,)
        Index of the feature that cast each vote.
    vote_occurrence : int64 ndarray, shape (V,)
        Index of the occurrence each vote went through.
    """
    feats = _as_points(features, "features")
    dtype = feats.dtype
    occ = _as_points(occurrences, "occurrences", dtype=dtype)
    me, _ = to_numpy(match_entry, "match_entry")
    if me.dtype.kind not in "iu" and me.size:
        raise TypeError(f"match_entry must hold integers, got dtype {me.dtype}")
    me = np.ascontiguousarray(me, dtype=np.int64).reshape(-1)
    mw, _ = as_float_array(match_weight, "match_weight", dtype=dtype)
    ow, _ = as_float_array(occ_weight, "occ_weight", dtype=dtype)
    if mw.shape != me.shape:
        raise ValueError(f"match_weight must have shape {me.shape}, got {mw.shape}")
    if ow.shape != (occ.shape[0],):
        raise ValueError(f"occ_weight must have shape ({occ.shape[0]},), got {ow.shape}")
    mp = _as_ptr(match_ptr, feats.shape[0], "match_ptr", me.shape[0])
    op, _ = to_numpy(occ_ptr, "occ_ptr")
    if op.ndim != 1 or op.shape[0] < 1:
        raise ValueError(f"occ_ptr must have shape (E + 1,), got {tuple(op.shape)}")
    n_entries = op.shape[0] - 1
    op = _as_ptr(op, n_entries, "occ_ptr", occ.shape[0])
    if me.size and (me.min() < 0 or me.max() >= n_entries):
        raise ValueError(f"match_entry must index the {n_entries} entries, got values in "
                         f"[{me.min()}, {me.max()}]")
    return _ism.accumulate_votes(feats, mp, me, mw, op, occ, ow)


def mean_shift(votes, weights=None, seeds=None, *, bandwidth_xy=0.1, bandwidth_scale=0.3,
               adaptive=True, kernel="flat", max_iter=300, tol=1e-3, merge=1.0, min_score=0.0):
    """Modes of weighted (x, y, scale) votes by (scale-adaptive) mean-shift (C++, parallel).

    From each seed, the estimate ``m`` moves to the weighted mean of the votes inside its
    window ``((x - mx)^2 + (y - my)^2) / hxy^2 + (s - ms)^2 / hs^2 <= 1`` until it moves
    less than ``tol`` (in window units) or after ``max_iter`` steps. With ``adaptive`` the
    half-widths are ``hxy = bandwidth_xy * ms`` and ``hs = bandwidth_scale * ms`` (the
    balloon kernel), else the constants ``bandwidth_xy`` and ``bandwidth_scale``. The
    converged estimates are sorted by score and an estimate within ``merge`` windows of a
    stronger one is merged into it, as in scikit-learn's ``MeanShift``; with unit weights,
    ``adaptive=False`` and equal bandwidths the modes are those of
    ``sklearn.cluster.MeanShift(bandwidth, seeds=seeds)``.

    Parameters
    ----------
    votes : array, shape (V, 3)
    weights : array, shape (V,), optional
        Non-negative vote weights with a finite sum; default ones.
    seeds : array, shape (S, 3), optional
        Starting points; default the votes themselves (see :func:`bin_seeds` for fewer).
    bandwidth_xy, bandwidth_scale : float > 0
    adaptive : bool
    kernel : {"flat", "epanechnikov"}
        Profile of the score. Both move to the flat-window mean (the Epanechnikov
        kernel's shadow); the score is the flat vote mass or the Epanechnikov density.
    max_iter : int >= 1
    tol, merge, min_score : float >= 0
        Modes scoring below ``min_score`` are dropped.

    Returns
    -------
    modes : ndarray, shape (K, 3)
        Hypotheses ``(x, y, scale)`` by decreasing score.
    scores : ndarray, shape (K,)
        Vote mass in the window at each mode.
    counts : int64 ndarray, shape (K,)
        Number of seeds that converged to each mode.
    """
    v = _as_points(votes, "votes")
    w = _as_weights(weights, v)
    s = v if seeds is None else _as_points(seeds, "seeds", dtype=v.dtype)
    bxy = check_positive(bandwidth_xy, "bandwidth_xy")
    bs = check_positive(bandwidth_scale, "bandwidth_scale")
    kernel = check_choice(kernel, "kernel", _KERNELS)
    # The kernel counts iterations in 32 bits; 2**31 - 1 of them is "until converged".
    it = min(check_int(max_iter, "max_iter", minimum=1), 2**31 - 1)
    tol = check_positive(tol, "tol", strict=False)
    merge = check_positive(merge, "merge", strict=False)
    min_score = check_positive(min_score, "min_score", strict=False)
    if adaptive and ((v.size and v[:, 2].min() <= 0) or (s.size and s[:, 2].min() <= 0)):
        raise ValueError("vote and seed scales (column 2) must be > 0 with adaptive=True")
    return _ism.mean_shift(v, w, s, bxy, bs, adaptive, kernel, it, tol, merge, min_score)


def bin_seeds(votes, weights=None, *, bandwidth_xy=0.1, bandwidth_scale=0.3, adaptive=True,
              min_mass=0.0):
    """Fewer mean-shift seeds: weighted means of the votes per window-sized bin.

    Bins are a grid in ``(x / hxy, y / hxy, log s / log(1 + bandwidth_scale))`` with
    ``hxy = bandwidth_xy * s`` (adaptive) or ``bandwidth_xy``; like scikit-learn's
    ``bin_seeding`` but weighted. Bins with a mass below ``min_mass`` give no seed.

    Parameters
    ----------
    votes : array, shape (V, 3)
    weights : array, shape (V,), optional
        Non-negative vote weights with a finite sum; default ones.
    bandwidth_xy, bandwidth_scale : float > 0
    adaptive : bool
    min_mass : float

    Returns
    -------
    seeds : ndarray, shape (S, 3)
        By decreasing bin mass.
    """
    bandwidth_xy = check_positive(bandwidth_xy, "bandwidth_xy")
    bandwidth_scale = check_positive(bandwidth_scale, "bandwidth_scale")
    min_mass = check_real(min_mass, "min_mass")
    v = _as_points(votes, "votes")
    w = _as_weights(weights, v)
    if v.shape[0] == 0:
        return v.reshape(0, 3)
    if adaptive:
        if v[:, 2].min() <= 0:
            raise ValueError("vote scales must be > 0 with adaptive=True")
        ls = np.log(v[:, 2].astype(np.float64)) / np.log1p(bandwidth_scale)
        sb = np.floor(ls)
        # The bin's spatial size follows the scale at the bin's lower edge.
        h = bandwidth_xy * np.exp(sb * np.log1p(bandwidth_scale))
    else:
        sb = np.floor(v[:, 2] / bandwidth_scale)
        h = np.full(v.shape[0], bandwidth_xy)
    # Bin keys stay float64 (floors of finite quotients are exact): extreme votes or
    # bandwidths give keys beyond int64 or infinite (a bin width that under- or
    # overflowed), which must not be cast. 0 / 0 (a zero coordinate, a zero-width bin)
    # is bin 0.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        key = np.column_stack([np.floor(v[:, 0] / h), np.floor(v[:, 1] / h), sb])
    key[np.isnan(key)] = 0.0
    span = key.max(0) - key.min(0) + 1
    if np.abs(key).max() < 2.0**52 and float(np.prod(span)) < 2.0**62:
        # Fast path, keys exact integers: one int64 per bin (row-major over the keys' box,
        # the same order as the rows').
        _, inverse = np.unique(np.ravel_multi_index((key - key.min(0)).astype(np.int64).T,
                                                    span.astype(np.int64)), return_inverse=True)
    else:
        _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = inverse.max() + 1
    mass = np.bincount(inverse, weights=w, minlength=n)
    ok = mass > max(min_mass, 0.0)
    # Each seed is a convex combination of its bin's votes (weights divided by the bin's
    # mass first): sums of weight x coordinate could overflow near the float64 limits.
    with np.errstate(divide="ignore", invalid="ignore"):
        share = w / mass[inverse]
    seeds = np.stack([np.bincount(inverse, weights=share * v[:, d], minlength=n) for d in range(3)], 1)[ok]
    order = np.argsort(-mass[ok], kind="stable")
    return np.ascontiguousarray(seeds[order], dtype=v.dtype)
