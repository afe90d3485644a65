"""Anchor shapes clustered from the training boxes (YOLOv2's dimension clusters).

Glossary of shape letters: N boxes (or shapes); M shapes; k clusters (anchors).

A box shape is its (width, height). Two shapes are compared as if the boxes were centred at
the same point, so that only their size and elongation matter, not where they lie.
"""

from __future__ import annotations

import numpy as np
import torch

from pydetect._validation import _is_torch_tensor, as_float_array, check_int, to_numpy

__all__ = ["kmeans_anchors", "shape_iou"]


def _check_shapes(arr, name: str, *, strict: bool) -> None:
    """Shape (N, 2) and values > 0 (``strict``) or >= 0; works on numpy arrays and tensors."""
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (width, height), got {tuple(arr.shape)}")
    if arr.shape[0] and bool((arr <= 0).any() if strict else (arr < 0).any()):
        raise ValueError(f"{name} must hold {'positive' if strict else 'non-negative'} widths and heights")


def _as_wh(x, name: str, *, strict: bool, dtype=None) -> np.ndarray:
    """A checked (N, 2) float array of widths and heights (numpy input or CPU tensor)."""
    raw, _ = to_numpy(x, name)
    if raw.ndim != 2:  # before as_float_array, which turns a 0-d array into (1,)
        raise ValueError(f"{name} must have shape (N, 2) of (width, height), got {tuple(raw.shape)}")
    arr, _ = as_float_array(raw, name, dtype=dtype)
    _check_shapes(arr, name, strict=strict)
    return arr


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of centre-aligned shapes, no checks; 0 where both shapes have zero area."""
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _shape_iou_torch(a_wh, b_wh):
    ref = a_wh if _is_torch_tensor(a_wh) else b_wh
    tensors = []
    for x, name in ((a_wh, "a_wh"), (b_wh, "b_wh")):
        if not _is_torch_tensor(x):
            x = torch.as_tensor(_as_wh(x, name, strict=False), device=ref.device)
        if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                      torch.uint8)):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite, got NaN or infinite values")
        _check_shapes(x, name, strict=False)
        tensors.append(x)
    a, b = tensors
    if a.device != b.device:
        raise ValueError(f"a_wh and b_wh must be on the same device, got {a.device} and {b.device}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    inter = torch.minimum(a[:, None, 0], b[None, :, 0]) * torch.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    positive = union > 0
    return torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)),
                       torch.zeros_like(union))


def shape_iou(a_wh, b_wh):
    """IoU of box shapes aligned at a common centre.

    Parameters
    ----------
    a_wh : array-like or torch.Tensor, shape (N, 2)
        Widths and heights (>= 0, finite).
    b_wh : array-like or torch.Tensor, shape (M, 2)

    Returns
    -------
    iou : numpy.ndarray or torch.Tensor, shape (N, M)
        ``min(w1, w2) * min(h1, h2) / (w1 h1 + w2 h2 - min(w1, w2) * min(h1, h2))``, and 0
        where both shapes have zero area. A tensor if either input is one (on its device,
        gradients kept), else a numpy array. float32 and float64 are kept (two dtypes
        promote); integers compute in float32.

    Notes
    -----
    This is the IoU of two boxes of these sizes sharing a centre: the quantity YOLOv2's
    dimension clusters use as a similarity (:func:`kmeans_anchors`), and the one by which
    YOLO-style detectors match a ground-truth box to the anchor of its cell.
    """
    if _is_torch_tensor(a_wh) or _is_torch_tensor(b_wh):
        return _shape_iou_torch(a_wh, b_wh)
    a = _as_wh(a_wh, "a_wh", strict=False)
    b = _as_wh(b_wh, "b_wh", strict=False)
    dtype = np.promote_types(a.dtype, b.dtype)
    return _iou(a.astype(dtype, copy=False), b.astype(dtype, copy=False)).astype(dtype, copy=False)


def kmeans_anchors(boxes_wh, k, seed=0, max_iter=300):
    """Anchor shapes by k-means on box shapes with the distance ``1 - IoU`` (YOLOv2).

    Parameters
    ----------
    boxes_wh : array-like or CPU torch.Tensor, shape (N, 2)
        Widths and heights of the training boxes, positive and finite (for xyxy boxes:
        ``boxes[:, 2:] - boxes[:, :2]``). Each box counts once, so frequent shapes weigh more.
    k : int
        Number of anchors, between 1 and the number of distinct shapes in ``boxes_wh``.
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` for the k-means++ seeding; equal seeds give
        equal anchors.
    max_iter : int, default 300
        Most Lloyd iterations (0 returns the k-means++ seeds).

    Returns
    -------
    anchors : numpy.ndarray of float64, shape (k, 2)
        The cluster centres as (width, height), sorted by area ``w * h`` (ties by width).
    mean_iou : float
        Mean over the boxes of the IoU with their best anchor (YOLOv2's "Avg IOU").

    Notes
    -----
    The distance between a box shape and a centre is ``d = 1 - IoU`` with both aligned at a
    common centre (:func:`shape_iou`), so that large boxes do not dominate the clustering as
    they would with the Euclidean distance on (w, h) [1]_.

    Seeding is k-means++: with ``rng = numpy.random.default_rng(seed)``, the first centre is
    box ``rng.integers(N)``; each next one is box ``rng.choice(N, p=d**2 / sum(d**2))``, d
    being each box's distance to its nearest centre chosen so far. Lloyd iterations then
    assign each box to the centre of highest IoU (ties to the lowest index) and move each
    centre to the mean (w, h) of its boxes: the update of standard k-means, which YOLOv2 keeps
    (the mean is not the minimiser of the summed distance 1 - IoU); a cluster left empty keeps
    its centre. They
    stop when no assignment changes, or after ``max_iter``.

    References
    ----------
    .. [1] J. Redmon and A. Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017,
       section 2 ("Better"), "Dimension Clusters" (Table 1 and Figure 2).

    Examples
    --------
    >>> wh = [[10, 20], [11, 19], [40, 40], [42, 38]]
    >>> anchors, mean_iou = kmeans_anchors(wh, 2)
    >>> anchors.round(1).tolist(), round(mean_iou, 3)
    ([[10.5, 19.5], [41.0, 39.0]], 0.941)
    """
    wh = _as_wh(boxes_wh, "boxes_wh", strict=True, dtype=np.float64)
    n = wh.shape[0]
    if n == 0:
        raise ValueError("boxes_wh must hold at least one box, got shape (0, 2)")
    k = check_int(k, "k", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    distinct = len(np.unique(wh, axis=0))
    if k > distinct:
        raise ValueError(f"k must be at most the number of distinct shapes in boxes_wh, "
                         f"got k={k} for {distinct} distinct shape{'s' if distinct != 1 else ''}")

    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    best = _iou(wh, wh[chosen[0]][None])[:, 0]
    for _ in range(1, k):
        d2 = (1.0 - best) ** 2
        total = d2.sum()
        if not total > 0:
            # Shapes that differ only below float rounding: pick among those not yet chosen.
            fresh = np.flatnonzero(~(wh[:, None, :] == wh[chosen][None]).all(2).any(1))
            d2 = np.zeros(n)
            d2[fresh] = 1.0
            total = d2.sum()
        j = int(rng.choice(n, p=d2 / total))
        chosen.append(j)
        best = np.maximum(best, _iou(wh, wh[j][None])[:, 0])
    centres = wh[chosen].copy()

    assign = None
    for _ in range(max_iter):
        new = _iou(wh, centres).argmax(1)  # argmax: the first of tied maxima
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = assign == c
            if members.any():
                centres[c] = wh[members].mean(0)

    area = centres[:, 0] * centres[:, 1]
    anchors = centres[np.lexsort((centres[:, 0], area))]
    mean_iou = float(_iou(wh, anchors).max(1).mean())
    return anchors, mean_iou
