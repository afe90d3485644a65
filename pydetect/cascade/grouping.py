"""Grouping of overlapping cascade detections (OpenCV's ``groupRectangles``)."""

from __future__ import annotations

import numpy as np

from pydetect._validation import as_float_array, as_int32_array, check_int32, check_positive
from pydetect.ops import _cascade

__all__ = ["group_rectangles"]


def group_rectangles(rects, min_neighbors: int = 3, eps: float = 0.2, levels=None,
                     weights=None):
    """Clusters similar rectangles and averages each cluster, as ``cv2.groupRectangles``.

    Two rectangles are similar when each of their four edges lies within
    ``eps * (min(w1, w2) + min(h1, h2)) / 2`` of the other's; clusters are the connected
    components of that relation (Viola & Jones 2001, section 5.6). A cluster is kept when
    it has more than ``min_neighbors`` members and does not lie inside a more populated
    cluster (up to ``eps`` of the larger one's size). ``min_neighbors <= 0`` keeps every
    rectangle as it is.

    Parameters
    ----------
    rects : int array, shape (N, 4)
        ``(x, y, w, h)`` rectangles: int32 values (floats must be integral).
    min_neighbors : int, default 3
    eps : float > 0, default 0.2
    levels, weights : arrays, shape (N,), optional
        Reject levels (int32) and finite stage sums (``detectMultiScale3``); each cluster
        keeps its best.

    Returns
    -------
    rects : (K, 4) int32
    neighbours : (K,) int32
        Cluster sizes (ones when ``min_neighbors <= 0``).
    levels : (K,) int32
    weights : (K,) float64
    """
    r = as_int32_array(rects, "rects")
    if r.size == 0:
        r = r.reshape(0, 4)
    if r.ndim != 2 or r.shape[1] != 4:
        raise ValueError(f"rects must have shape (N, 4), got {tuple(r.shape)}")
    n = r.shape[0]
    lv = np.zeros(n, np.int32) if levels is None else as_int32_array(levels, "levels")
    wt = (np.zeros(n, np.float64) if weights is None
          else as_float_array(weights, "weights", dtype=np.float64)[0])
    for name, a in (("levels", lv), ("weights", wt)):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) to match rects, got {a.shape}")
    min_neighbors = check_int32(min_neighbors, "min_neighbors")
    eps = check_positive(eps, "eps")
    return _cascade.cascade_group(r, lv, wt, min_neighbors, eps)
