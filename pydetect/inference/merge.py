"""Merging the detections of overlapping tiles: NMS, greedy non-maximum merging, WBF.

Every method works within each label (boxes of different labels never merge) and returns
the merged detections by decreasing score (equal scores: the earlier detection first), with
the fields boxes, scores and labels.

Matching metric
---------------
Two boxes *match* by their IoU (``"iou"``) or by their intersection over the smaller box's
area (``"ios"``, SAHI's IOS). A box truncated by a tile border is (nearly) contained in the
full box of the same object, so its IOS with it is close to 1 however small the visible part,
while its IoU is the visible fraction: ``"ios"`` is the default for tiles. Degenerate boxes
(zero area) match nothing.

Methods
-------
``"nms"``
    :func:`pydetect.ops.batched_nms`: a box is dropped when its IoU with a kept box of its
    label is ``> iou`` (IoU only).
``"greedy"``
    :func:`greedy_nmm`, SAHI's greedy non-maximum merging (``GreedyNMMPostprocess``).
``"wbf"``
    :func:`weighted_boxes_fusion` (Solovyev et al., 2021).
"""

from __future__ import annotations

import numpy as np

from pydetect import ops
from pydetect._validation import check_choice, check_fraction
from pydetect.structures import Detections

__all__ = ["MERGES", "MATCHES", "box_overlap", "greedy_nmm", "weighted_boxes_fusion", "merge_detections"]

MERGES = ("nms", "greedy", "wbf")
MATCHES = ("iou", "ios")


def box_overlap(boxes1, boxes2, match: str = "iou") -> np.ndarray:
    """Pairwise IoU or IOS (intersection over the smaller area) of two sets of boxes.

    Parameters
    ----------
    boxes1 : (N, 4) array, boxes2 : (M, 4) array
    match : {"iou", "ios"}

    Returns
    -------
    (N, M) float64 ndarray
        0 where either box has zero area.
    """
    check_choice(match, "match", MATCHES)
    a = np.asarray(boxes1, np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, np.float64).reshape(-1, 4)
    iou = np.nan_to_num(ops.box_iou(a, b), nan=0.0)
    if match == "iou":
        return iou
    # The intersection follows from the IoU, I = IoU (A + B) / (1 + IoU), so that the overlap
    # math stays in ops.box_iou.
    area_a = ops.box_area(a)[:, None]
    area_b = ops.box_area(b)[None, :]
    smaller = np.minimum(area_a, area_b)
    inter = iou * (area_a + area_b) / (1.0 + iou)
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def _by_label(dets: Detections):
    """For each label, the indices of its detections by decreasing score (ties: lower index
    first); and each detection's rank in that global order."""
    order = np.argsort(-dets.scores, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = dets.labels[order]
    return [order[labels == label] for label in np.unique(labels)], rank


def _assemble(boxes, scores, labels, first_rank) -> Detections:
    """Detections by decreasing score, ties broken by the rank of each result's first box."""
    if not len(boxes):
        return Detections()
    boxes, scores, labels, first_rank = (np.asarray(v) for v in (boxes, scores, labels, first_rank))
    order = np.lexsort((first_rank, -scores))
    return Detections(boxes[order].astype(np.float32), scores=scores[order].astype(np.float32),
                      labels=labels[order].astype(np.int64))


def greedy_nmm(detections: Detections, iou: float = 0.5, match: str = "ios") -> Detections:
    """Greedy non-maximum merging, with SAHI's semantics (``GreedyNMMPostprocess``).

    Within each label: the highest-scoring remaining box ``S`` is kept, and every remaining
    box whose overlap with ``S`` (its original box) is ``>= iou`` leaves the pool as a member
    of its group. The kept box then absorbs the members in decreasing score order: a member
    whose overlap with the box merged so far is ``> iou`` is merged into it; the others are
    dropped. Merging two boxes gives their *union* (the smallest box containing both) and the
    higher score, which is the kept box's score (SAHI's ``merge_object_prediction_pair``).

    Parameters
    ----------
    detections : Detections
    iou : float in [0, 1], default 0.5
        Matching threshold, of the IoU or of the IOS as ``match`` says.
    match : {"iou", "ios"}, default "ios"

    Returns
    -------
    Detections
        One detection per group.

    References
    ----------
    F. C. Akyon, S. O. Altinuc, A. Temizel, "Slicing aided hyper inference and fine-tuning for
    small object detection", ICIP 2022 (SAHI, ``sahi/postprocess/combine.py``).
    """
    thr = check_fraction(iou, "iou")
    check_choice(match, "match", MATCHES)
    boxes = detections.boxes.astype(np.float64)
    groups, rank = _by_label(detections)
    out_boxes, out_scores, out_labels, first = [], [], [], []
    for pool in groups:
        while len(pool):
            lead, rest = pool[0], pool[1:]
            matched = box_overlap(boxes[lead], boxes[rest], match)[0] >= thr
            merged = boxes[lead].copy()
            for j in rest[matched]:
                if box_overlap(merged, boxes[j], match)[0, 0] > thr:
                    merged = np.concatenate([np.minimum(merged[:2], boxes[j, :2]), np.maximum(merged[2:], boxes[j, 2:])])
            out_boxes.append(merged)
            out_scores.append(detections.scores[lead])
            out_labels.append(detections.labels[lead])
            first.append(rank[lead])
            pool = rest[~matched]
    return _assemble(out_boxes, out_scores, out_labels, first)


def weighted_boxes_fusion(detections: Detections, iou: float = 0.55, match: str = "iou", views=None) -> Detections:
    """Weighted boxes fusion (Solovyev, Wang, Gabruseva, 2021).

    Within each label, boxes are visited by decreasing score. A box joins the cluster whose
    fused box overlaps it most, if that overlap is ``> iou``; otherwise it starts a cluster.
    A cluster's fused box is the score-weighted mean of its boxes' coordinates (the plain mean
    if all its scores are 0), updated as boxes join; its score is the mean score of its ``N``
    boxes, rescaled by ``min(T, N) / T``, where ``T`` is the number of *views* that could have
    seen it: in the paper the number of models; here the number of ``views`` (tile rectangles)
    that contain the fused box wholly, at least 1. An object seen whole by two tiles but
    detected in one of them keeps half its score, as a box predicted by one model in two
    does in the paper; without ``views``, ``T = 1`` and the score is the mean.

    Parameters
    ----------
    detections : Detections
        Scores must be >= 0 (they are the weights).
    iou : float in [0, 1], default 0.55 (the paper's)
        Matching threshold, of the IoU or of the IOS as ``match`` says.
    match : {"iou", "ios"}, default "iou"
    views : (V, 4) array, optional
        ``(x0, y0, x1, y1)`` rectangles, e.g. the tiles.

    Returns
    -------
    Detections
        One detection per cluster.

    Notes
    -----
    Averaging coordinates suits boxes that each cover the whole object (tiles overlapping
    by more than the object); a box truncated by a tile border pulls the fused box inwards,
    where :func:`greedy_nmm`'s union does not.

    References
    ----------
    R. Solovyev, W. Wang, T. Gabruseva, "Weighted boxes fusion: ensembling boxes from different
    object detection models", Image and Vision Computing 107, 2021.
    """
    thr = check_fraction(iou, "iou")
    check_choice(match, "match", MATCHES)
    if len(detections) and float(detections.scores.min()) < 0:
        raise ValueError("weighted boxes fusion weights boxes by score: scores must be >= 0, "
                         f"got {float(detections.scores.min())}")
    views = np.zeros((0, 4)) if views is None else np.asarray(views, np.float64).reshape(-1, 4)
    boxes = detections.boxes.astype(np.float64)
    scores = detections.scores.astype(np.float64)
    groups, rank = _by_label(detections)
    out_boxes, out_scores, out_labels, first = [], [], [], []
    for pool in groups:
        fused = np.zeros((len(pool), 4))  # cluster c's fused box in row c, for c < k
        members = []
        k = 0
        for i in pool:
            best = -1
            if k:
                overlap = box_overlap(fused[:k], boxes[i], match)[:, 0]
                best = int(np.argmax(overlap))
                best = best if overlap[best] > thr else -1
            if best < 0:
                members.append([i])
                fused[k] = boxes[i]
                k += 1
                continue
            members[best].append(i)
            w = scores[members[best]]
            w = w if w.sum() > 0 else np.ones_like(w)
            fused[best] = (w[:, None] * boxes[members[best]]).sum(0) / w.sum()
        for c, m in enumerate(members):
            box = fused[c]
            inside = ((views[:, 0] <= box[0]) & (views[:, 1] <= box[1])
                      & (views[:, 2] >= box[2]) & (views[:, 3] >= box[3]))
            t = max(1, int(inside.sum()))
            out_boxes.append(box)
            out_scores.append(scores[m].mean() * min(t, len(m)) / t)
            out_labels.append(detections.labels[m[0]])
            first.append(rank[m[0]])
    return _assemble(out_boxes, out_scores, out_labels, first)


def merge_detections(detections: Detections, merge: str = "greedy", iou: float = 0.5, match=None,
                     views=None) -> Detections:
    """Merges duplicate detections with one of :data:`MERGES` (see the module docstring).

    Parameters
    ----------
    detections : Detections
    merge : {"nms", "greedy", "wbf"}, default "greedy"
    iou : float in [0, 1], default 0.5
        Matching threshold.
    match : {"iou", "ios"}, optional
        Default: ``"iou"`` for ``"nms"`` (the only metric it takes), ``"ios"`` otherwise.
    views : (V, 4) array, optional
        For ``"wbf"``: the views (tiles) whose count rescales the fused scores.

    Returns
    -------
    Detections
        Fields boxes, scores and labels, by decreasing score.
    """
    check_choice(merge, "merge", MERGES)
    if match is not None:
        check_choice(match, "match", MATCHES)
    if merge == "nms":
        if match not in (None, "iou"):
            raise ValueError(f"match={match!r} needs merge='greedy' or 'wbf': merge='nms' matches by IoU")
        thr = check_fraction(iou, "iou")
        core = Detections(detections.boxes, scores=detections.scores, labels=detections.labels)
        return core[ops.batched_nms(core.boxes, core.scores, core.labels, thr)]
    if merge == "greedy":
        return greedy_nmm(detections, iou, match or "ios")
    return weighted_boxes_fusion(detections, iou, match or "ios", views)
