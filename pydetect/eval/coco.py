"""COCO bbox evaluation, reproducing pycocotools' ``COCOeval`` bit for bit, vectorised.

pycocotools matches each image and category separately in Python loops (detections by
decreasing score, stable mergesort; each to the best still-free ground truth with IoU >=
t, regular ground truth before ignored ones, ties to the last). The same greedy rule is
applied here to all (image, category) groups at once:

1. all detection/ground-truth pairs of a group get pycocotools' IoU (same float64
   operations: ``w = min(x+w) - max(x)``; crowd regions divide by the detection area);
2. pairs under the lowest threshold (0.5) can never match, so only the remaining
   "candidate" pairs take part in the greedy pass, which runs in rounds: round r handles,
   in every group at once, the r-th detection that has candidates, for all 4 area ranges x
   10 IoU thresholds together;
3. accumulation (precision envelope, 101-point recall sampling, the 12 summary stats) uses
   the same numpy operations in the same order as ``COCOeval.accumulate``/``summarize``.

Reference: T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014;
pycocotools ``cocoeval.py``.
"""

from __future__ import annotations

import numpy as np

from pydetect.data._cocojson import parse_gt, parse_results
from pydetect.data.dataset import DetectionDataset
from pydetect.structures import Detections

__all__ = ["coco_evaluate", "COCO_STAT_NAMES"]

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RNG = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_LBL = ("all", "small", "medium", "large")
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ---------------------------------------------------------------------------------------
# Problem: flat arrays of ground truth and detections, indices into sorted ids
# ---------------------------------------------------------------------------------------
class _Problem:
    """img_ids (I,), cat_ids (K,) sorted; gt_* (G,) and dt_* (D,) arrays; boxes xywh float64."""

    def __init__(self, img_ids, cat_ids, cat_names, gt, dt):
        self.img_ids = np.asarray(img_ids, np.int64)
        self.cat_ids = np.asarray(cat_ids, np.int64)
        self.cat_names = list(cat_names)
        self.gt_img = np.searchsorted(self.img_ids, gt["image_id"])
        self.gt_cat = np.searchsorted(self.cat_ids, gt["category_id"])
        self.gt_box = np.asarray(gt["bbox"], np.float64).reshape(-1, 4)
        self.gt_area = np.asarray(gt["area"], np.float64)
        self.gt_crowd = np.asarray(gt["iscrowd"], bool)
        self.gt_id = np.asarray(gt["id"], np.int64)
        self.dt_img = np.searchsorted(self.img_ids, dt["image_id"])
        self.dt_cat = np.searchsorted(self.cat_ids, dt["category_id"])
        self.dt_box = np.asarray(dt["bbox"], np.float64).reshape(-1, 4)
        self.dt_score = np.asarray(dt["score"], np.float64)


def _xyxy_to_xywh(b) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


def _problem_from_dataset(dataset) -> tuple:
    img_ids = np.asarray(dataset.image_ids, np.int64)
    order = np.argsort(img_ids, kind="stable")
    cat_ids = np.asarray(dataset.category_ids, np.int64)
    cat_order = np.argsort(cat_ids, kind="stable")
    parts = {k: [] for k in ("image_id", "category_id", "bbox", "area", "iscrowd")}
    for i in order:  # pycocotools walks images in sorted-id order
        t = dataset.targets[i]
        k = len(t["labels"])
        box = _xyxy_to_xywh(t["boxes"])
        parts["image_id"].append(np.full(k, img_ids[i]))
        parts["category_id"].append(cat_ids[t["labels"]])
        parts["bbox"].append(box)
        parts["area"].append(t["area"] if "area" in t else box[:, 2] * box[:, 3])
        parts["iscrowd"].append(t["iscrowd"])
    gt = {k: (np.concatenate(v) if v else np.zeros((0, 4) if k == "bbox" else 0)) for k, v in parts.items()}
    gt["id"] = np.arange(1, len(gt["image_id"]) + 1)
    names = [dataset.class_names[j] for j in cat_order]
    return img_ids[order], cat_ids[cat_order], names, gt


def _dets_from_list(detections, dataset) -> dict:
    detections = list(detections)
    if len(detections) != len(dataset):
        raise ValueError(f"detections must hold one Detections per dataset image ({len(dataset)}), "
                         f"got {len(detections)}")
    cat_ids = np.asarray(dataset.category_ids, np.int64)
    parts = {k: [] for k in ("image_id", "category_id", "bbox", "score")}
    for i, d in enumerate(detections):
        if not isinstance(d, Detections):
            raise TypeError(f"detections[{i}] must be a Detections, got {type(d).__name__}")
        if len(d) and (d.labels.min() < 0 or d.labels.max() >= len(cat_ids)):
            raise ValueError(f"detections[{i}].labels must lie in [0, {len(cat_ids)}) (the dataset's classes), "
                             f"got values in [{d.labels.min()}, {d.labels.max()}]")
        if len(d) and not (np.isfinite(d.boxes).all() and np.isfinite(d.scores).all()):
            raise ValueError(f"detections[{i}] has non-finite boxes or scores")
        parts["image_id"].append(np.full(len(d), dataset.image_ids[i], np.int64))
        parts["category_id"].append(cat_ids[d.labels])
        parts["bbox"].append(_xyxy_to_xywh(d.boxes))
        parts["score"].append(d.scores.astype(np.float64))
    if not detections:
        return {"image_id": np.zeros(0, np.int64), "category_id": np.zeros(0, np.int64),
                "bbox": np.zeros((0, 4)), "score": np.zeros(0)}
    return {k: np.concatenate(v) for k, v in parts.items()}


def _build_problem(gt, detections) -> _Problem:
    if isinstance(gt, DetectionDataset):
        img_ids, cat_ids, names, g = _problem_from_dataset(gt)
    else:
        p = parse_gt(gt)
        img_ids = np.unique(np.asarray([im["id"] for im in p["images"]], np.int64))
        cat_ids = np.asarray([c for c, _ in p["categories"]], np.int64)
        names = [n for _, n in p["categories"]]
        g = p
    if isinstance(detections, (list, tuple)) and detections and not isinstance(detections[0], dict):
        if not isinstance(gt, DetectionDataset):
            raise TypeError("a list of Detections needs a DetectionDataset as ground truth "
                            "(for COCO JSON ground truth pass COCO results)")
        d = _dets_from_list(detections, gt)
    else:
        d = parse_results(detections, image_ids=img_ids, category_ids=cat_ids)
    return _Problem(img_ids, cat_ids, names, g, d)


# ---------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------
def _segment_starts(keys_sorted: np.ndarray) -> np.ndarray:
    if keys_sorted.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])


def _coco_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou for paired rows: d, g (P, 4) xywh float64, crowd (P,) bool."""
    w = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    da = d[:, 2] * d[:, 3]
    ga = g[:, 2] * g[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _evaluate(pb: _Problem, iou_thrs=IOU_THRS, area_rng=AREA_RNG, max_dets=MAX_DETS):
    """Per-detection match results, like COCOeval.evaluate for all images at once.

    Returns a dict with, for the detections kept (the best ``max(max_dets)`` per image and
    category): ``cat, img, rank, score`` (D',), ``tp, fp`` (D', A, T) bool, and the
    ground-truth ``cat`` / ``ignore`` (G, A) arrays needed to count positives.
    """
    K = len(pb.cat_ids)
    T, A = len(iou_thrs), len(area_rng)
    lo = np.array([a[0] for a in area_rng], np.float64)
    hi = np.array([a[1] for a in area_rng], np.float64)

    # Ground truth grouped by (image, category), file order kept inside a group.
    gkey = pb.gt_img * K + pb.gt_cat
    gorder = np.argsort(gkey, kind="stable")
    gkey_s = gkey[gorder]
    g_box = pb.gt_box[gorder]
    g_crowd = pb.gt_crowd[gorder]
    g_area = pb.gt_area[gorder]
    g_id = pb.gt_id[gorder]
    g_ignore = g_crowd[:, None] | (g_area[:, None] < lo) | (g_area[:, None] > hi)  # (G, A)

    # Detections: by group, then decreasing score (stable), top max_dets[-1] per group.
    dkey = pb.dt_img * K + pb.dt_cat
    D0 = dkey.size
    dorder = np.lexsort((np.arange(D0), -pb.dt_score, dkey))
    dkey_s = dkey[dorder]
    starts = _segment_starts(dkey_s)
    seg_len = np.diff(np.r_[starts, D0])
    rank = np.arange(D0) - np.repeat(starts, seg_len)
    keep = rank < max(max_dets)
    dorder, dkey_s, rank = dorder[keep], dkey_s[keep], rank[keep]
    D = dorder.size
    d_box = pb.dt_box[dorder]
    d_score = pb.dt_score[dorder]
    d_area = d_box[:, 2] * d_box[:, 3]

    # All (detection, gt) pairs within a group, gts in file order.
    g_first = np.searchsorted(gkey_s, dkey_s, side="left")
    g_count = np.searchsorted(gkey_s, dkey_s, side="right") - g_first
    p_det = np.repeat(np.arange(D), g_count)
    offs = np.arange(p_det.size) - np.repeat(np.cumsum(g_count) - g_count, g_count)
    p_gt = np.repeat(g_first, g_count) + offs
    p_iou = _coco_iou(d_box[p_det], g_box[p_gt], g_crowd[p_gt])
    thr = np.minimum(iou_thrs, 1 - 1e-10)
    cand = p_iou >= thr.min()
    p_det, p_gt, p_iou = p_det[cand], p_gt[cand], p_iou[cand]  # sorted by det, then gt

    matched = np.zeros((D, A, T), bool)
    m_ignore = np.zeros((D, A, T), bool)
    m_id0 = np.zeros((D, A, T), bool)
    if p_det.size:
        # Round of each candidate detection: its index among its group's candidate detections.
        c_det = np.unique(p_det)
        c_key = dkey_s[c_det]
        c_start = _segment_starts(c_key)
        c_round = np.arange(c_det.size) - np.repeat(c_start, np.diff(np.r_[c_start, c_det.size]))
        det_round = np.full(D, -1)
        det_round[c_det] = c_round
        p_round = det_round[p_det]
        by_round = np.argsort(p_round, kind="stable")
        r_bounds = np.searchsorted(p_round[by_round], np.arange(c_round.max() + 2))
        gtm = np.zeros((g_box.shape[0], A, T), bool)
        for r in range(c_round.max() + 1):
            sel = by_round[r_bounds[r]:r_bounds[r + 1]]  # pairs of this round, by det then gt
            gt_r, iou_r, det_r = p_gt[sel], p_iou[sel], p_det[sel]
            seg = _segment_starts(det_r)
            seg_of = np.repeat(np.arange(seg.size), np.diff(np.r_[seg, sel.size]))
            avail = ~(gtm[gt_r] & ~g_crowd[gt_r, None, None]) & (iou_r[:, None, None] >= thr)  # (P, A, T)
            ig = g_ignore[gt_r][:, :, None]
            reg = avail & ~ig
            has_reg = np.logical_or.reduceat(reg, seg, axis=0)
            use = np.where(has_reg[seg_of], reg, avail & ig)
            val = np.where(use, iou_r[:, None, None], -1.0)
            best_val = np.maximum.reduceat(val, seg, axis=0)
            pos = np.where(use & (val == best_val[seg_of]), np.arange(sel.size)[:, None, None], -1)
            best = np.maximum.reduceat(pos, seg, axis=0)  # (S, A, T): last best pair, or -1
            s_i, a_i, t_i = np.nonzero(best >= 0)
            bp = best[s_i, a_i, t_i]
            g_m = gt_r[bp]
            d_m = det_r[bp]
            gtm[g_m, a_i, t_i] = True
            matched[d_m, a_i, t_i] = True
            m_ignore[d_m, a_i, t_i] = g_ignore[g_m, a_i]
            m_id0[d_m, a_i, t_i] = g_id[g_m] == 0

    # pycocotools stores the matched gt's id in dtMatches and tests it for truth: a match
    # to an annotation with id 0 counts as no match (reproduced for exact parity).
    dtm = matched & ~m_id0
    d_out = (d_area[:, None] < lo) | (d_area[:, None] > hi)  # (D, A)
    dt_ig = m_ignore | (~dtm & d_out[:, :, None])
    return {
        "cat": pb.dt_cat[dorder], "img": pb.dt_img[dorder], "rank": rank, "score": d_score,
        "tp": dtm & ~dt_ig, "fp": ~dtm & ~dt_ig,
        "gt_cat": pb.gt_cat[gorder], "gt_ignore": g_ignore,
        "gt_groups": np.unique(gkey_s), "dt_groups": np.unique(dkey_s),
    }


# ---------------------------------------------------------------------------------------
# Accumulation and summary
# ---------------------------------------------------------------------------------------
def _accumulate(ev: dict, K: int, iou_thrs=IOU_THRS, area_rng=AREA_RNG, max_dets=MAX_DETS):
    T, R, A, M = len(iou_thrs), len(REC_THRS), len(area_rng), len(max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    # Per category: detections ordered as pycocotools concatenates them (image, rank),
    # then stably sorted by decreasing score.
    order = np.lexsort((ev["rank"], ev["img"], -ev["score"], ev["cat"]))
    cat_s = ev["cat"][order]
    c_lo = np.searchsorted(cat_s, np.arange(K), "left")
    c_hi = np.searchsorted(cat_s, np.arange(K), "right")
    npig_all = np.zeros((K, A), np.int64)
    np.add.at(npig_all, ev["gt_cat"], ~ev["gt_ignore"])
    has_any = np.zeros(K, bool)
    has_any[ev["gt_cat"]] = True
    has_any[ev["cat"]] = True
    spacing = np.spacing(1)
    for k in range(K):
        if not has_any[k]:
            continue  # no image has gt or detections of k: COCOeval's E is empty
        idx = order[c_lo[k]:c_hi[k]]
        rank_k = ev["rank"][idx]
        for m, max_det in enumerate(max_dets):
            sel = idx[rank_k < max_det]
            nd = sel.size
            tp_all = np.cumsum(ev["tp"][sel], axis=0)  # (nd, A, T)
            fp_all = np.cumsum(ev["fp"][sel], axis=0)
            for a in range(A):
                npig = int(npig_all[k, a])
                if npig == 0:
                    continue
                tp_sum = tp_all[:, a, :].T.astype(dtype=float)  # (T, nd), as COCOeval's tp_sum
                fp_sum = fp_all[:, a, :].T.astype(dtype=float)
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + spacing)
                recall[:, k, a, m] = rc[:, -1] if nd else 0
                if nd == 0:
                    precision[:, :, k, a, m] = 0.0
                    continue
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    inds = np.searchsorted(rc[t], REC_THRS, side="left")
                    q = np.zeros(R)
                    ok = inds < nd
                    q[ok] = pr[t, inds[ok]]
                    precision[t, :, k, a, m] = q
    return precision, recall


def _summarize(precision, recall, iou_thrs=IOU_THRS, max_dets=MAX_DETS) -> np.ndarray:
    def one(ap, iou_thr=None, area="all", max_det=100):
        a = AREA_LBL.index(area)
        m = list(max_dets).index(max_det)
        if ap:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == iou_thrs)[0]]
            s = s[:, :, :, a, m]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == iou_thrs)[0]]
            s = s[:, :, a, m]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    md = max_dets[2]
    return np.array([
        one(1), one(1, .5, max_det=md), one(1, .75, max_det=md),
        one(1, area="small", max_det=md), one(1, area="medium", max_det=md), one(1, area="large", max_det=md),
        one(0, max_det=max_dets[0]), one(0, max_det=max_dets[1]), one(0, max_det=md),
        one(0, area="small", max_det=md), one(0, area="medium", max_det=md), one(0, area="large", max_det=md),
    ])


def coco_evaluate(gt, detections, *, return_arrays: bool = False) -> dict:
    """COCO bbox AP/AR exactly as pycocotools' ``COCOeval`` computes them, faster.

    Parameters
    ----------
    gt : DetectionDataset, dict or path
        Ground truth: a :class:`~pydetect.data.DetectionDataset` (its ``image_ids``,
        ``category_ids``, targets' ``iscrowd`` and optional ``area``; ``difficult`` is not
        used by COCO), or COCO ground-truth JSON (a path or the loaded dict).
    detections : list of Detections, list of dict or path
        One :class:`~pydetect.Detections` per dataset image (labels index the dataset's
        classes), or COCO results (``image_id, category_id, bbox [x, y, w, h], score``) as a
        list or a JSON path. Every image and category must exist in ``gt``.
    return_arrays : bool
        Also return pycocotools' ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M).

    Returns
    -------
    dict
        ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl`` (floats, equal to
        ``COCOeval.stats``; -1 where undefined), ``stats`` (the 12 as an array) and
        ``per_class`` ``{class name: AP}`` (AP at IoU .50:.95, all areas, 100 detections;
        -1 for a class without ground truth).

    Raises
    ------
    ValueError
        For malformed JSON (naming the file and field), detections of unknown images or
        categories, or a detections list whose length differs from the dataset's.

    Notes
    -----
    Evaluation settings are COCOeval's defaults for ``iouType="bbox"``: IoU thresholds
    .50:.05:.95, 101 recall points, at most 1/10/100 detections per image and category,
    area ranges all / small (< 32²) / medium / large (> 96²); crowd regions match any number
    of detections, which are then ignored; IoU with a crowd region is intersection over
    detection area. Boxes are pycocotools' continuous ``[x, y, w, h]`` (no +1).
    """
    pb = _build_problem(gt, detections)
    K = len(pb.cat_ids)
    ev = _evaluate(pb)
    precision, recall = _accumulate(ev, K)
    stats = _summarize(precision, recall)
    out = {name: float(v) for name, v in zip(COCO_STAT_NAMES, stats)}
    out["stats"] = stats
    per_class = {}
    for k, name in enumerate(pb.cat_names):
        s = precision[:, :, k, 0, -1]
        per_class[name] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
    out["per_class"] = per_class
    if return_arrays:
        out["precision"] = precision
        out["recall"] = recall
    return out
