"""Slow, obviously-correct references for the Implicit Shape Model kernels (numpy loops)."""

import numpy as np


def accumulate_votes(features, match_ptr, match_entry, match_weight, occ_ptr, occ, occ_weight):
    votes, weights, vf, vo = [], [], [], []
    for f in range(len(features)):
        x, y, s = (float(v) for v in features[f])
        for k in range(match_ptr[f], match_ptr[f + 1]):
            e = match_entry[k]
            for o in range(occ_ptr[e], occ_ptr[e + 1]):
                votes.append((x + s * occ[o][0], y + s * occ[o][1], s * occ[o][2]))
                weights.append(float(match_weight[k]) * float(occ_weight[o]))
                vf.append(f)
                vo.append(o)
    return (np.array(votes, dtype=np.float64).reshape(-1, 3), np.array(weights), np.array(vf, np.int64),
            np.array(vo, np.int64))


def _window(m, bxy, bs, adaptive):
    f = m[2] if adaptive else 1.0
    return bxy * f, bs * f


def _inside(votes, m, bxy, bs, adaptive):
    hxy, hs = _window(m, bxy, bs, adaptive)
    d2 = ((votes[:, 0] - m[0]) ** 2 + (votes[:, 1] - m[1]) ** 2) / hxy**2 + ((votes[:, 2] - m[2]) / hs) ** 2
    return d2 <= 1.0, d2


def mean_shift(votes, weights, seeds, bandwidth_xy, bandwidth_scale, adaptive=True, kernel="flat",
               max_iter=300, tol=1e-3, merge=1.0, min_score=0.0):
    """Brute-force balloon mean-shift: every vote is tested at every step of every seed."""
    votes = np.asarray(votes, np.float64)
    weights = np.asarray(weights, np.float64)
    converged = []
    for seed in np.asarray(seeds, np.float64):
        m = seed.copy()
        alive = True
        for _ in range(max_iter):
            inside, _ = _inside(votes, m, bandwidth_xy, bandwidth_scale, adaptive)
            w = weights[inside]
            if not w.sum() > 0:
                alive = False
                break
            new = (votes[inside] * w[:, None]).sum(0) / w.sum()
            hxy, hs = _window(m, bandwidth_xy, bandwidth_scale, adaptive)
            shift = np.sqrt(((new[0] - m[0]) ** 2 + (new[1] - m[1]) ** 2) / hxy**2 + ((new[2] - m[2]) / hs) ** 2)
            m = new
            if shift <= tol:
                break
        if not alive:
            continue
        inside, d2 = _inside(votes, m, bandwidth_xy, bandwidth_scale, adaptive)
        if not weights[inside].sum() > 0:
            continue
        prof = np.ones_like(d2) if kernel == "flat" else 1.0 - d2
        score = float((weights * prof)[inside].sum())
        if score >= min_score:
            converged.append((m, score))
    converged.sort(key=lambda t: (-t[1], *(-t[0])))
    modes, scores = [], []
    for m, score in converged:
        if any(_inside(k[None], mk, bandwidth_xy * merge, bandwidth_scale * merge, adaptive)[0][0]
               for mk, k in ((mk, m) for mk in modes)):
            continue
        modes.append(m)
        scores.append(score)
    return np.array(modes).reshape(-1, 3), np.array(scores)
