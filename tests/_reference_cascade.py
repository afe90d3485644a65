"""Slow, obviously-correct references for integral images and cascades (issue 4)."""

from __future__ import annotations

import numpy as np


def integral_tables(img):
    """(sum, squared, tilted) straight from the definitions, (H+1, W+1) int64/float64."""
    img = np.asarray(img)
    h, w = img.shape
    v = img.astype(np.float64) if img.dtype.kind == "f" else img.astype(np.int64)
    s = np.zeros((h + 1, w + 1), v.dtype)
    q = np.zeros((h + 1, w + 1), np.float64)
    t = np.zeros((h + 1, w + 1), v.dtype)
    s[1:, 1:] = v.cumsum(0).cumsum(1)
    q[1:, 1:] = (v.astype(np.float64) ** 2).cumsum(0).cumsum(1)
    xs = np.arange(w)
    for Y in range(h + 1):
        for X in range(w + 1):
            total = 0
            for y in range(Y):
                m = np.abs(xs - X + 1) <= Y - y - 1
                total += v[y, m].sum()
            t[Y, X] = total
    return s, q, t
