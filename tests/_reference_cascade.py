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


def run_window(cascade, level_img, x, y, trace=False):
    """OpenCV's runAt for one window of a pyramid level, written plainly with numpy
    scalars in OpenCV's precisions. Returns (result, last stage sum[, trace])."""
    f32 = np.float32
    img = np.asarray(level_img)
    ww, wh = cascade.window_size
    win = img[y:y + wh, x:x + ww].astype(np.int64)
    log = []
    vnf = f32(1)
    if cascade.feature_type == "HAAR":
        n = win[1:wh - 1, 1:ww - 1]
        area = float(n.size)
        s, sq = int(n.sum()), int((n * n).sum())
        nf = area * sq - float(s) * s
        if not nf > 0:
            return -1, 0.0
        vnf = f32(1.0 / np.sqrt(nf))
        if not area * float(vnf) < 0.1:
            return -1, 0.0
        masks = [_feature_mask_ref(f, ww, wh) for f in cascade.features]

    def value(fi):
        if cascade.feature_type == "HAAR":
            f = cascade.features[fi]
            parts = [int((win * (m != 0)).sum()) if False else int((win * m).sum())
                     for m in masks[fi]]
            v = f32(f.weights[0]) * f32(parts[0]) + f32(f.weights[1]) * f32(parts[1])
            if len(parts) > 2 and f.weights[2] != 0:
                v = f32(v + f32(f.weights[2]) * f32(parts[2]))
            return f32(f32(v) * vnf)
        bx, by, bw, bh = cascade.features[fi].rect
        blocks = [[int(win[by + i * bh:by + (i + 1) * bh, bx + j * bw:bx + (j + 1) * bw].sum())
                   for j in range(3)] for i in range(3)]
        c = blocks[1][1]
        order = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
        code = 0
        for k, (i, j) in enumerate(order):
            code |= (blocks[i][j] >= c) << (7 - k)
        return code

    total = 0.0
    for si, st in enumerate(cascade.stages):
        total = 0.0
        for t in st.weak:
            idx = 0
            while True:
                v = value(int(t.feature[idx]))
                if cascade.feature_type == "HAAR":
                    go_left = v < f32(t.threshold[idx])
                    log.append((si, float(v), float(t.threshold[idx])))
                else:
                    go_left = bool(int(t.subset[idx][v >> 5]) & (1 << (v & 31)))
                idx = int(t.left[idx] if go_left else t.right[idx])
                if idx <= 0:
                    break
            total += float(t.leaves[-idx])
        if total < float(f32(f32(st.threshold) - f32(1e-5))):
            return (-si, total, log) if trace else (-si, total)
    return (1, total, log) if trace else (1, total)


def _feature_mask_ref(f, ww, wh):
    """Per-rectangle pixel masks of a Haar feature (tilted ones from the table formula)."""
    out = []
    ys, xs = np.mgrid[0:wh, 0:ww]

    def tri(X, Y):
        return ((ys < Y) & (np.abs(xs - X + 1) <= Y - ys - 1)).astype(np.int64)

    for (x, y, w, h) in f.rects:
        if f.tilted:
            out.append(tri(x, y) - tri(x - h, y + h) - tri(x + w, y + w) + tri(x + w - h, y + w + h))
        else:
            m = np.zeros((wh, ww), np.int64)
            m[y:y + h, x:x + w] = 1
            out.append(m)
    return out
