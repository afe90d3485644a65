"""PASCAL VOC average precision and proposal recall.

``voc_evaluate`` follows the VOC devkit's algorithm as ported in py-faster-rcnn's
``voc_eval.py`` (detections of a class sorted by decreasing score over all images; each
takes the ground truth of its image it overlaps most; a hit needs IoU > threshold; a hit on an
already-taken ground truth is a false positive; a hit on a "difficult" one counts as neither),
with pydetect's continuous boxes: area = (x2 - x1)(y2 - y1), no +1.

References
----------
M. Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
J. Uijlings et al., "Selective Search for Object Recognition", IJCV 2013 (ABO / MABO).
J. Hosang et al., "What makes for effective detection proposals?", TPAMI 2016 (average recall).
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import as_boxes, as_float_array, check_fraction, check_int
from pydetect.data.dataset import DetectionDataset
from pydetect.ops import box_iou
from pydetect.structures import Detections, check_detections

__all__ = ["voc_evaluate", "voc_ap", "proposal_recall"]


def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """Average precision from a precision/recall curve, as the VOC devkit computes it.

    Parameters
    ----------
    recall, precision : array, shape (N,)
        Cumulative recall and precision after each detection (by decreasing score).
    use_07_metric : bool
        True: VOC2007's 11-point AP, the mean over t in {0, 0.1, ..., 1} of the highest
        precision at recall >= t. False: VOC2010+ area under the monotone precision envelope,
        summed where recall changes.

    Returns
    -------
    float
    """
    rec = as_float_array(recall, "recall", dtype=np.float64)[0].ravel()
    prec = as_float_array(precision, "precision", dtype=np.float64)[0].ravel()
    if rec.shape != prec.shape:
        raise ValueError(f"recall and precision must have the same shape, got {rec.shape} and {prec.shape}")
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _check_dataset(dataset) -> None:
    if not isinstance(dataset, DetectionDataset):
        raise TypeError(f"dataset must be a DetectionDataset, got {type(dataset).__name__}")


def _iou_1vn(box, boxes):
    ixmin = np.maximum(boxes[:, 0], box[0])
    iymin = np.maximum(boxes[:, 1], box[1])
    ixmax = np.minimum(boxes[:, 2], box[2])
    iymax = np.minimum(boxes[:, 3], box[3])
    inter = np.maximum(ixmax - ixmin, 0.0) * np.maximum(iymax - iymin, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def voc_evaluate(dataset, detections, iou_threshold: float = 0.5, use_07_metric: bool = False) -> dict:
    """PASCAL VOC per-class AP and mAP.

    Parameters
    ----------
    dataset : DetectionDataset
        Ground truth; objects flagged ``difficult`` (or ``iscrowd``) are ignored: matching
        one is neither a true nor a false positive, and they do not count as positives.
    detections : list of Detections
        One per dataset image, labels indexing ``dataset.class_names``.
    iou_threshold : float
        A detection is a hit when its IoU with a ground-truth box is > this (VOC: 0.5).
    use_07_metric : bool
        VOC2007 11-point AP if True, else VOC2010+ all-point AP.

    Returns
    -------
    dict
        ``mAP`` (mean over classes that have non-difficult ground truth), ``AP``
        ``{class: AP}`` (NaN for a class without positives), and per class the curves
        ``precision`` / ``recall`` ``{class: (N,) array}`` and ``n_positives``.

    Notes
    -----
    Detections are ordered by decreasing score with a stable sort (image order, then
    the order within an image, breaks ties); the devkit's ``np.argsort`` left tie order
    unspecified.
    """
    iou_threshold = check_fraction(iou_threshold, "iou_threshold")
    _check_dataset(dataset)
    detections = check_detections(detections, len(dataset), len(dataset.class_names))
    names = dataset.class_names
    targets = dataset.targets
    out = {"AP": {}, "precision": {}, "recall": {}, "n_positives": {}}
    for c, name in enumerate(names):
        gts = []
        npos = 0
        for t in targets:
            sel = t["labels"] == c
            ign = (t["difficult"] | t["iscrowd"])[sel]
            gts.append((t["boxes"][sel].astype(np.float64), ign, np.zeros(int(sel.sum()), bool)))
            npos += int((~ign).sum())
        img_idx, scores, boxes = [], [], []
        for i, d in enumerate(detections):
            sel = d.labels == c
            if sel.any():
                img_idx.append(np.full(int(sel.sum()), i))
                scores.append(d.scores[sel].astype(np.float64))
                boxes.append(d.boxes[sel].astype(np.float64))
        if img_idx:
            img_idx, scores, boxes = np.concatenate(img_idx), np.concatenate(scores), np.concatenate(boxes)
        else:
            img_idx, scores, boxes = np.zeros(0, int), np.zeros(0), np.zeros((0, 4))
        order = np.argsort(-scores, kind="stable")
        tp = np.zeros(order.size)
        fp = np.zeros(order.size)
        for rank, j in enumerate(order):
            gboxes, ign, taken = gts[img_idx[j]]
            ovmax = -np.inf
            if gboxes.shape[0]:
                ov = _iou_1vn(boxes[j], gboxes)
                jmax = int(np.argmax(ov))
                ovmax = ov[jmax]
            if ovmax > iou_threshold:
                if not ign[jmax]:
                    if not taken[jmax]:
                        tp[rank] = 1.0
                        taken[jmax] = True
                    else:
                        fp[rank] = 1.0
            else:
                fp[rank] = 1.0
        fp = np.cumsum(fp)
        tp = np.cumsum(tp)
        rec = tp / npos if npos else np.full(tp.shape, np.nan)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        out["AP"][name] = voc_ap(rec, prec, use_07_metric) if npos else float("nan")
        out["precision"][name] = prec
        out["recall"][name] = rec
        out["n_positives"][name] = npos
    valid = [v for v in out["AP"].values() if not np.isnan(v)]
    out["mAP"] = float(np.mean(valid)) if valid else float("nan")
    return out


def proposal_recall(proposals, dataset, iou_thresholds=None, max_proposals=None) -> dict:
    """Recall of object proposals at several IoU thresholds, and MABO.

    Parameters
    ----------
    proposals : list of (N_i, 4) arrays or Detections
        Class-agnostic boxes per dataset image (xyxy), best-ranked first.
    dataset : DetectionDataset
        Ground truth; ``iscrowd`` and ``difficult`` objects are left out.
    iou_thresholds : sequence of float, optional
        Default 0.5, 0.55, ..., 0.95.
    max_proposals : int, optional
        Use only the first ``max_proposals`` boxes of each image.

    Returns
    -------
    dict
        ``iou_thresholds`` (T,), ``recall`` (T,) fraction of objects whose best proposal has
        IoU >= threshold, ``AR`` (mean recall over the thresholds, Hosang et al.), ``best_iou``
        (G,) per object, ``ABO`` ``{class: mean best IoU}``, ``MABO`` (mean of the per-class
        ABO over classes with objects, Uijlings et al.), ``n_proposals`` (mean per image).
    """
    if iou_thresholds is None:
        iou_thresholds = np.linspace(0.5, 0.95, 10)
    thr = np.array([check_fraction(t, "iou_thresholds") for t in np.atleast_1d(iou_thresholds)], np.float64)
    if thr.size == 0:
        raise ValueError("iou_thresholds must not be empty")
    if max_proposals is not None:
        max_proposals = check_int(max_proposals, "max_proposals", minimum=1)
    _check_dataset(dataset)
    if not hasattr(proposals, "__iter__"):
        raise TypeError(f"proposals must be a list of box arrays, got {type(proposals).__name__}")
    proposals = list(proposals)
    if len(proposals) != len(dataset):
        raise ValueError(f"proposals must hold one box array per dataset image ({len(dataset)}), got {len(proposals)}")
    best, labels, counts = [], [], []
    for i, (p, t) in enumerate(zip(proposals, dataset.targets)):
        p = p.boxes if isinstance(p, Detections) else p
        p, _ = as_boxes(p, f"proposals[{i}]", dtype=np.float64)
        if max_proposals is not None:
            p = p[:max_proposals]
        counts.append(p.shape[0])
        keep = ~(t["iscrowd"] | t["difficult"])
        g = t["boxes"][keep].astype(np.float64)
        if g.shape[0] == 0:
            continue
        if p.shape[0]:
            iou = np.nan_to_num(np.asarray(box_iou(g, p)), nan=0.0)
            best.append(iou.max(axis=1))
        else:
            best.append(np.zeros(g.shape[0]))
        labels.append(t["labels"][keep])
    best = np.concatenate(best) if best else np.zeros(0)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    recall = (best[None, :] >= thr[:, None]).mean(axis=1) if best.size else np.full(thr.shape, np.nan)
    abo = {name: float(best[labels == c].mean()) for c, name in enumerate(dataset.class_names) if (labels == c).any()}
    return {
        "iou_thresholds": thr, "recall": recall, "AR": float(recall.mean()) if best.size else float("nan"),
        "best_iou": best, "ABO": abo, "MABO": float(np.mean(list(abo.values()))) if abo else float("nan"),
        "n_proposals": float(np.mean(counts)) if counts else 0.0,
    }
