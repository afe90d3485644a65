"""Slow, obviously-correct references for Felzenszwalb segmentation and selective search.

Plain Python: edges in a list, a union-find without any balancing, histograms counted
pixel by pixel from the definitions in the papers.

The Felzenszwalb reference uses the kernel's documented arithmetic — float32 pixels on the
[0, 1] scale, float32 smoothing taps accumulated in order, float32 edge weights, thresholds
Int(C) + k/|C| rounded to float32 — so that exact ties (common on integer images at
sigma = 0) fall the same way in both, by construction rather than by luck.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi


def _reflect(i: int, n: int) -> int:
    """scipy.ndimage's "reflect" border (half-sample symmetric)."""
    if n == 1:
        return 0
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, C) float32 separable Gaussian (scipy's reflect border, truncate 4): taps
    normalised in double, rounded to float32, accumulated in float32 in tap order."""
    img = image.astype(np.float32)
    if not sigma > 0:
        return img
    radius = int(4.0 * sigma + 0.5)
    taps = [math.exp(-0.5 * x * x / (sigma * sigma)) for x in range(-radius, radius + 1)]
    total = 0.0
    for t in taps:
        total += t
    k = [np.float32(t / total) for t in taps]
    h, w = img.shape[:2]
    along_x = np.zeros_like(img)
    for t in range(-radius, radius + 1):
        cols = [_reflect(x + t, w) for x in range(w)]
        along_x = along_x + k[t + radius] * img[:, cols]
    out = np.zeros_like(img)
    for t in range(-radius, radius + 1):
        rows = [_reflect(y + t, h) for y in range(h)]
        out = out + k[t + radius] * along_x[rows]
    return out


def grid_edges(h: int, w: int):
    """8-neighbour edges in the documented tie order: right, down, down-right, up-right,
    each in raster order of its first pixel ((y, x + 1) for up-right)."""
    edges = []
    for y in range(h):
        for x in range(w - 1):
            edges.append(((y, x), (y, x + 1)))
    for y in range(h - 1):
        for x in range(w):
            edges.append(((y, x), (y + 1, x)))
    for y in range(h - 1):
        for x in range(w - 1):
            edges.append(((y, x), (y + 1, x + 1)))
    for y in range(h - 1):
        for x in range(1, w):
            edges.append(((y, x), (y + 1, x - 1)))
    return edges


def _weight(a: np.ndarray, b: np.ndarray) -> float:
    d2 = np.float32(0)
    for ch in range(a.shape[0]):
        d = a[ch] - b[ch]
        d2 = np.float32(d2 + d * d)
    return float(np.sqrt(d2))


def felzenszwalb(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """Felzenszwalb & Huttenlocher (IJCV 2004), Algorithm 1, on a float32 image in [0, 1]."""
    assert image.dtype == np.float32, "the reference takes the kernel's float32 input"
    img = image[:, :, None] if image.ndim == 2 else image
    h, w = img.shape[:2]
    sm = smooth(img, sigma)
    k = scale / 255.0
    edges = grid_edges(h, w)
    weights = [_weight(sm[a], sm[b]) for a, b in edges]
    order = sorted(range(len(edges)), key=lambda i: (weights[i], i))
    parent = list(range(h * w))
    size = [1] * (h * w)
    threshold = [float(np.float32(k))] * (h * w)  # Int(C) + k / |C|, rounded to float32

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    def idx(p):
        return p[0] * w + p[1]

    for i in order:
        a, b = find(idx(edges[i][0])), find(idx(edges[i][1]))
        if a == b:
            continue
        if weights[i] < min(threshold[a], threshold[b]):
            parent[b] = a
            size[a] += size[b]
            threshold[a] = float(np.float32(weights[i] + k / size[a]))
    for i in order:
        a, b = find(idx(edges[i][0])), find(idx(edges[i][1]))
        if a != b and (size[a] < min_size or size[b] < min_size):
            parent[b] = a
            size[a] += size[b]
    labels = np.empty(h * w, np.int32)
    names = {}
    for p in range(h * w):
        labels[p] = names.setdefault(find(p), len(names))
    return labels.reshape(h, w)


def color_histogram(converted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """25 bins per channel over [0, 1], concatenated, L1-normalised (Uijlings et al. §3.3)."""
    img = converted[:, :, None] if converted.ndim == 2 else converted
    hist = []
    for c in range(img.shape[2]):
        bins = np.minimum((img[:, :, c][mask] * 25).astype(int), 24)
        hist.append(np.bincount(bins, minlength=25))
    hist = np.concatenate(hist).astype(np.float64)
    return hist / hist.sum()


def texture_bins(converted: np.ndarray) -> np.ndarray:
    """(H, W, C, 8) texture bin of every pixel: rectified Gaussian derivatives (sigma 1) in
    8 orientations, 10 bins over [0, the channel's largest gradient magnitude]."""
    img = converted[:, :, None] if converted.ndim == 2 else converted
    h, w, nc = img.shape
    out = np.zeros((h, w, nc, 8), int)
    for c in range(nc):
        plane = img[:, :, c].astype(np.float64)
        gx = ndi.gaussian_filter(plane, 1.0, order=(0, 1), mode="reflect", truncate=4.0)
        gy = ndi.gaussian_filter(plane, 1.0, order=(1, 0), mode="reflect", truncate=4.0)
        mx = np.sqrt(gx**2 + gy**2).max()
        for o in range(8):
            v = np.maximum(0, gx * np.cos(o * np.pi / 4) + gy * np.sin(o * np.pi / 4))
            out[:, :, c, o] = 0 if mx == 0 else np.minimum((v / mx * 10).astype(int), 9)
    return out


def texture_histogram(tbins: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """10 bins per orientation and channel, concatenated, L1-normalised."""
    sel = tbins[mask]  # (n, C, 8)
    n, nc, no = sel.shape
    hist = np.zeros((nc, no, 10))
    for c in range(nc):
        for o in range(no):
            hist[c, o] = np.bincount(sel[:, c, o], minlength=10)
    hist = hist.ravel()
    return hist / hist.sum()


def box_of(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


def similarity(converted, tbins, mask_a, mask_b, terms: int) -> float:
    """s(a, b) = [C] colour + [T] texture + [S] size + [F] fill, from the pixels."""
    area = mask_a.size
    s = 0.0
    if terms & 1:
        s += np.minimum(color_histogram(converted, mask_a), color_histogram(converted, mask_b)).sum()
    if terms & 2:
        s += np.minimum(texture_histogram(tbins, mask_a), texture_histogram(tbins, mask_b)).sum()
    na, nb = mask_a.sum(), mask_b.sum()
    if terms & 4:
        s += 1 - (na + nb) / area
    if terms & 8:
        x1, y1, x2, y2 = box_of(mask_a | mask_b)
        s += 1 - ((x2 - x1 + 1) * (y2 - y1 + 1) - na - nb) / area
    return float(s)


def adjacent(mask_a: np.ndarray, mask_b: np.ndarray) -> bool:
    """True when a pixel of a and one of b are 8-neighbours."""
    grown = ndi.binary_dilation(mask_a, structure=np.ones((3, 3), bool))
    return bool((grown & mask_b).any())
