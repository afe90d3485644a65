"""Brute-force PASCAL VOC AP (all-point, IoU 0.5) for the R-CNN tests.

Per class: detections of all images sorted by score; each is a true positive if its best
IoU with a not-yet-matched ground truth of that class in its image is >= 0.5; AP is the
area under the monotone precision envelope (VOC2010+). mAP averages the classes that
have ground truth.
"""

import numpy as np


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(tp, n_gt):
    if n_gt == 0:
        return None
    if len(tp) == 0:
        return 0.0
    tp = np.asarray(tp, float)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec, prec = ctp / n_gt, ctp / (ctp + cfp)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def ap50(dataset, detections, iou_threshold=0.5):
    """mAP at IoU 0.5 of a list of Detections (one per image of ``dataset``)."""
    aps = []
    for c in range(len(dataset.class_names)):
        dets, n_gt, gts = [], 0, []
        for i, d in enumerate(detections):
            t = dataset.target(i)
            g = t["boxes"][t["labels"] == c]
            gts.append((g, np.zeros(len(g), bool)))
            n_gt += len(g)
            for b, s in zip(d.boxes[d.labels == c], d.scores[d.labels == c]):
                dets.append((-float(s), i, b))
        dets.sort(key=lambda x: x[0])
        tp = []
        for _, i, b in dets:
            g, used = gts[i]
            best, best_j = 0.0, -1
            for j in range(len(g)):
                o = iou(b, g[j])
                if o > best:
                    best, best_j = o, j
            if best >= iou_threshold and not used[best_j]:
                used[best_j] = True
                tp.append(1)
            else:
                tp.append(0)
        ap = average_precision(tp, n_gt)
        if ap is not None:
            aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0
