"""Slow, obviously-correct references for Haar features and AdaBoost (tests only).

Everything here follows the definitions directly: rectangle sums by slicing pixels, tilted
rectangles as combinations of OpenCV's tilted-integral triangles built pixel by pixel, and
boosting by trying every split of every feature.
"""

import math

import numpy as np


# ----------------------------------------------------------------------------- Haar
def opencv_features(W, H, mode):
    """opencv_traincascade's generateFeatures, transcribed loop by loop (small windows only).

    Returns a list of (tilted, [(x, y, w, h, weight), ...]).
    """
    out = []
    core = mode != "basic"
    for x in range(W):
        for y in range(H):
            for dx in range(1, W + 1):
                for dy in range(1, H + 1):
                    if x + 2 * dx <= W and y + dy <= H:
                        out.append((False, [(x, y, 2 * dx, dy, -1), (x + dx, y, dx, dy, 2)]))
                    if x + dx <= W and y + 2 * dy <= H:
                        out.append((False, [(x, y, dx, 2 * dy, -1), (x, y + dy, dx, dy, 2)]))
                    if x + 3 * dx <= W and y + dy <= H:
                        out.append((False, [(x, y, 3 * dx, dy, -1), (x + dx, y, dx, dy, 3)]))
                    if x + dx <= W and y + 3 * dy <= H:
                        out.append((False, [(x, y, dx, 3 * dy, -1), (x, y + dy, dx, dy, 3)]))
                    if core:
                        if x + 4 * dx <= W and y + dy <= H:
                            out.append((False, [(x, y, 4 * dx, dy, -1), (x + dx, y, 2 * dx, dy, 2)]))
                        if x + dx <= W and y + 4 * dy <= H:
                            out.append((False, [(x, y, dx, 4 * dy, -1), (x, y + dy, dx, 2 * dy, 2)]))
                    if x + 2 * dx <= W and y + 2 * dy <= H:
                        out.append((False, [(x, y, 2 * dx, 2 * dy, -1), (x, y, dx, dy, 2),
                                            (x + dx, y + dy, dx, dy, 2)]))
                    if core and x + 3 * dx <= W and y + 3 * dy <= H:
                        out.append((False, [(x, y, 3 * dx, 3 * dy, -1), (x + dx, y + dy, dx, dy, 9)]))
                    if mode == "all":
                        if x + 2 * dx <= W and y + 2 * dx + dy <= H and x - dy >= 0:
                            out.append((True, [(x, y, 2 * dx, dy, -1), (x, y, dx, dy, 2)]))
                        if x + dx <= W and y + dx + 2 * dy <= H and x - 2 * dy >= 0:
                            out.append((True, [(x, y, dx, 2 * dy, -1), (x, y, dx, dy, 2)]))
                        if x + 3 * dx <= W and y + 3 * dx + dy <= H and x - dy >= 0:
                            out.append((True, [(x, y, 3 * dx, dy, -1), (x + dx, y + dx, dx, dy, 3)]))
                        if x + dx <= W and y + dx + 3 * dy <= H and x - 3 * dy >= 0:
                            out.append((True, [(x, y, dx, 3 * dy, -1), (x - dy, y + dy, dx, dy, 3)]))
                        if x + 4 * dx <= W and y + 4 * dx + dy <= H and x - dy >= 0:
                            out.append((True, [(x, y, 4 * dx, dy, -1), (x + dx, y + dx, 2 * dx, dy, 2)]))
                        if x + dx <= W and y + dx + 4 * dy <= H and x - 4 * dy >= 0:
                            out.append((True, [(x, y, dx, 4 * dy, -1), (x - dy, y + dy, dx, 2 * dy, 2)]))
    return out


def _triangle(H, W, X, Y):
    """Indicator of OpenCV's tilted-integral cell (X, Y): pixels y < Y, |x - X + 1| <= Y - 1 - y."""
    ys, xs = np.mgrid[0:H, 0:W]
    return ((ys < Y) & (np.abs(xs - X + 1) <= Y - 1 - ys)).astype(np.int64)


def tilted_rect_mask(H, W, x, y, w, h):
    """Pixels of OpenCV's tilted rectangle (x, y, w, h), from its four triangle corners."""
    m = (_triangle(H, W, x, y) - _triangle(H, W, x - h, y + h) - _triangle(H, W, x + w, y + w)
         + _triangle(H, W, x + w - h, y + w + h))
    assert set(np.unique(m)) <= {0, 1}, "a tilted rectangle must be a set of pixels"
    return m


def feature_value(img, tilted, rects):
    img = img.astype(np.int64)
    H, W = img.shape
    total = 0.0
    for x, y, w, h, wt in rects:
        if tilted:
            s = int((img * tilted_rect_mask(H, W, x, y, w, h)).sum())
        else:
            s = int(img[y:y + h, x:x + w].sum())
        total += wt * s
    return total


def norm_factor(img):
    """OpenCV's calcNormFactor: sqrt(A * sum(p^2) - sum(p)^2) over (1, 1, w - 2, h - 2)."""
    inner = img[1:-1, 1:-1].astype(np.int64)
    v = float(inner.size) * float((inner ** 2).sum()) - float(inner.sum()) ** 2
    return np.sqrt(v) if v > 0 else 0.0


# ----------------------------------------------------------------------------- boosting
def _seqsum(values):
    """Left-to-right float64 sum (numpy's pairwise sum rounds differently)."""
    total = 0.0
    for v in values:
        total += float(v)
    return total


def _split_score(algo, lp, ln, tp, tn):
    """Split quality as a fraction (num, den) to maximise; compared by cross-multiplying.

    Discrete: -(weighted misclassification); Real: -Z; Gentle: sl^2/wl + sr^2/wr, which
    maximises when the weighted squared error of the leaf means is least.
    """
    if algo == "gentle":  # the sums are (sl, wl) of y w and w, the totals (S, W)
        sl, wl, sr, wr = lp, ln, tp - lp, tn - ln
        if wl > 0 and wr > 0:
            return sl * sl * wr + sr * sr * wl, wl * wr
        if wl > 0:
            return sl * sl, wl
        if wr > 0:
            return sr * sr, wr
        return 0.0, 1.0
    rp, rn = max(tp - lp, 0.0), max(tn - ln, 0.0)
    if algo == "discrete":
        return -(min(lp, ln) + min(rp, rn)), 1.0
    return -2.0 * (math.sqrt(lp * ln) + math.sqrt(rp * rn)), 1.0


def _leaf_value(algo, wp, wn, n):
    if algo == "discrete":
        return 1.0 if wp >= wn else -1.0
    if algo == "real":
        eps = 0.5 / n
        return 0.5 * math.log((wp + eps) / (wn + eps))
    return (wp - wn) / (wp + wn) if wp + wn > 0 else 0.0


def _best_split(X, y, w, member, algo):
    """Tries every threshold between distinct consecutive values of every feature.

    Sums are accumulated one sample at a time (totals in index order, left sums in sorted
    order), so that exact ties between splits break the same way as in any implementation
    that adds in that order: the lowest feature, then the lowest threshold.
    """
    idx = np.flatnonzero(member)
    def parts(i):  # what the running sums add: (w+, w-), or (y w, w) for gentle
        if algo == "gentle":
            return float(y[i]) * w[i], w[i]
        return (w[i], 0.0) if y[i] > 0 else (0.0, w[i])

    tp = tn = 0.0
    for i in idx:
        a, b = parts(i)
        tp += a
        tn += b
    best = None
    for j in range(X.shape[1]):
        order = idx[np.argsort(X[idx, j], kind="stable")]
        lp = ln = 0.0
        for k, i in enumerate(order):
            if k > 0 and X[i, j] > X[order[k - 1], j]:
                num, den = _split_score(algo, lp, ln, tp, tn)
                if best is None or num * best[3] > best[0] * den:
                    a, b = np.float32(X[order[k - 1], j]), np.float32(X[i, j])
                    thr = np.float32((a + b) * np.float32(0.5))
                    best = (num, j, thr if thr > a else b, den)
            a, b = parts(i)
            lp += a
            ln += b
    return best


def _trim(w, rate):
    s = np.sort(w)
    total = 1.0 - rate
    i = 0
    while i < len(s) and total > 0:
        total -= s[i]
        i += 1
    thr = s[min(i, len(s) - 1)]  # the heaviest sample always stays
    return w >= thr


def adaboost(X, y, n_rounds, algo="gentle", max_depth=1, trim_rate=0.95):
    """Reference AdaBoost; returns the training scores after each round (list of arrays)."""
    n = len(y)
    w = np.full(n, 1.0 / n)
    w = w / _seqsum(w)
    scores = np.zeros(n)
    history = []
    for _ in range(n_rounds):
        keep = _trim(w, trim_rate) if 0 < trim_rate < 1 else np.ones(n, bool)
        root = _best_split(X, y, w, keep, algo)
        if root is None:  # nothing to split: one constant leaf
            leaf = np.zeros(n, int)
        else:
            side = (X[:, root[1]] >= root[2]).astype(int)
            leaf = side.copy()
            if max_depth == 2:
                leaf = np.zeros(n, int)
                nxt = 0
                for s in (0, 1):
                    child = _best_split(X, y, w, keep & (side == s), algo)
                    if child is None:
                        leaf[side == s] = nxt
                        nxt += 1
                    else:
                        leaf[side == s] = nxt + (X[side == s, child[1]] >= child[2])
                        nxt += 2
        values = np.array([_leaf_value(algo, _seqsum(w[keep & (leaf == l) & (y > 0)]),
                                       _seqsum(w[keep & (leaf == l) & (y < 0)]), n)
                           for l in range(leaf.max() + 1)])
        h = values[leaf]
        if algo == "discrete":
            err = _seqsum(w[h != y]) / _seqsum(w)
            err = min(max(err, 1e-5), 1 - 1e-5)
            c = math.log((1 - err) / err)
            w = np.where(h != y, w * math.exp(c), w)
            h = h * c
        else:
            w = w * np.array([math.exp(v) for v in -y * h])  # libm's exp, as C++
        scores = scores + h
        w = w / _seqsum(w)
        history.append(scores.copy())
    return history
