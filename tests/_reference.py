"""Slow, obviously-correct Python references for the box kernels.

Arithmetic is done with numpy scalars of the input dtype in the same operation order as
the kernels (and torchvision), so float32 results can be compared for exact equality.
Thresholds are compared as Python floats (double), as torchvision does.
"""


import numpy as np


def area(b):
    return (b[2] - b[0]) * (b[3] - b[1])


def iou(a, b):
    w = max(a.dtype.type(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(a.dtype.type(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area(a) + area(b) - inter)


def box_iou(a, b):
    out = np.empty((len(a), len(b)), a.dtype)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = iou(a[i], b[j])
    return out


def order_by_score(scores):
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def nms(boxes, scores, thr):
    keep = []
    for i in order_by_score(scores):
        if all(not (float(iou(boxes[k], boxes[i])) > thr) for k in keep):
            keep.append(i)
    return np.array(keep, np.int64)


def batched_nms(boxes, scores, labels, thr):
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        keep += [idx[k] for k in nms(boxes[idx], scores[idx], thr)]
    return np.array(sorted(keep, key=lambda i: (-float(scores[i]), i)), np.int64)


def soft_nms(boxes, scores, thr, sigma, score_thr, method):
    s = {i: scores[i] for i in range(len(scores)) if float(scores[i]) >= score_thr}
    keep, kept = [], []
    while s:
        best = min(s, key=lambda i: (-float(s[i]), i))
        keep.append(best)
        kept.append(s.pop(best))
        for j in list(s):
            o = iou(boxes[best], boxes[j])
            if o > 0:
                if method == "gaussian":
                    s[j] = s[j] * np.exp(-(o * o) * (s[j].dtype.type(1) / s[j].dtype.type(sigma)))
                elif float(o) > thr:
                    s[j] = s[j] * (s[j].dtype.type(1) - o)
            if not float(s[j]) >= score_thr:
                del s[j]
    return np.array(keep, np.int64), np.array(kept, scores.dtype)


def clustered_boxes(rng, n, dtype=np.float32, num_clusters=None, image=1000.0):
    """Boxes jittered around a few centres, as detectors produce before NMS."""
    num_clusters = num_clusters or max(1, n // 20)
    centres = rng.uniform(0, image, (num_clusters, 2))
    sizes = rng.uniform(10, 120, (num_clusters, 2))
    which = rng.integers(0, num_clusters, n)
    c = centres[which] + rng.normal(0, 6, (n, 2))
    wh = sizes[which] * rng.uniform(0.8, 1.25, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    return boxes.astype(dtype), rng.random(n).astype(dtype)
