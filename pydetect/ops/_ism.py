"""The Implicit Shape Model's native kernels (Hough votes, balloon mean-shift).

Private wrappers of ``pydetect._C`` for :mod:`pydetect.ism`, which validates the inputs:
these only convert each array once to the dtype and C-contiguous layout the kernel reads
and map the kernel names to the native enum. Shape letters: F features, E codebook entries,
O occurrences, M feature-to-entry matches, V votes, S seeds, K modes.
"""

from __future__ import annotations

import numpy as np

from pydetect import _C

__all__ = ["MEAN_SHIFT_KERNELS", "accumulate_votes", "mean_shift"]

#: Score profiles of :func:`mean_shift`.
MEAN_SHIFT_KERNELS = {"flat": _C.MeanShiftKernel.FLAT, "epanechnikov": _C.MeanShiftKernel.EPANECHNIKOV}


def _c(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def accumulate_votes(features, match_ptr, match_entry, match_weight, occ_ptr, occurrences, occ_weight):
    """Probabilistic Hough votes of matched features (CSR layouts).

    Parameters
    ----------
    features : (F, 3) float32 or float64
        ``(x, y, scale)``; its dtype is that of every float array below and of the votes.
    match_ptr : (F + 1,) int64
        Feature ``i``'s matches are ``match_entry[match_ptr[i]:match_ptr[i + 1]]``.
    match_entry : (M,) int64
    match_weight : (M,) float
    occ_ptr : (E + 1,) int64
        Entry ``e``'s occurrences are rows ``occ_ptr[e]:occ_ptr[e + 1]`` of ``occurrences``.
    occurrences : (O, 3) float
    occ_weight : (O,) float

    Returns
    -------
    votes (V, 3), weights (V,), vote_feature (V,) int64, vote_occurrence (V,) int64
    """
    feats = np.ascontiguousarray(features)
    if feats.dtype not in (np.float32, np.float64):
        feats = feats.astype(np.float64)
    t = feats.dtype
    return _C.ism_accumulate_votes(feats, _c(match_ptr, np.int64), _c(match_entry, np.int64),
                                   _c(match_weight, t), _c(occ_ptr, np.int64), _c(occurrences, t),
                                   _c(occ_weight, t))


def mean_shift(votes, weights, seeds, bandwidth_xy: float, bandwidth_scale: float, adaptive: bool,
               kernel: str, max_iter: int, tol: float, merge: float, min_score: float):
    """Balloon mean-shift over weighted votes.

    Parameters
    ----------
    votes : (V, 3) float32 or float64
        Its dtype is that of ``weights``, ``seeds`` and the results.
    weights : (V,) float
    seeds : (S, 3) float
    kernel : {"flat", "epanechnikov"}
    max_iter : int in [1, 2**31)

    Returns
    -------
    modes (K, 3), scores (K,), counts (K,) int64
    """
    v = np.ascontiguousarray(votes)
    if v.dtype not in (np.float32, np.float64):
        v = v.astype(np.float64)
    t = v.dtype
    return _C.ism_mean_shift(v, _c(weights, t), _c(seeds, t), float(bandwidth_xy), float(bandwidth_scale),
                             bool(adaptive), MEAN_SHIFT_KERNELS[kernel], int(max_iter), float(tol), float(merge),
                             float(min_score))
