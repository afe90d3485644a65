"""Non-maximum suppression: greedy, class-batched and soft.

Greedy NMS visits boxes by decreasing score and drops every box whose IoU with an
already kept box is greater than ``iou_threshold``. Equal scores are visited lower index
first (a stable sort), which is what torchvision's CPU ``nms`` does: pydetect's kept
indices equal torchvision's, in the same order, for float32 and float64 inputs.

For tensors, :func:`nms` and :func:`batched_nms` call the registered torch ops
``torch.ops.pydetect.nms`` / ``batched_nms`` (see :mod:`pydetect.ops._library`): they can be
scripted (torch.jit.script), traced (torch.fx, torch.compile, torch.export) and run on CUDA
tensors where pydetect has CUDA kernels. Arrays take the direct path to the C++ kernels.
"""

import numpy as np
import torch
import torch.fx
from torch import Tensor

from pydetect import _C
from pydetect._validation import (as_boxes, as_labels, as_vector, check_choice,
                                  check_fraction, check_positive, like)
from pydetect.ops import _library
from pydetect.ops._library import compute_pair

__all__ = ["nms", "batched_nms", "soft_nms"]


def _boxes_and_scores(boxes, scores):
    b, kind = as_boxes(boxes)
    s, _ = as_vector(scores, b.shape[0], "scores")
    dtype = np.result_type(b.dtype, s.dtype)
    return b.astype(dtype, copy=False), s.astype(dtype, copy=False), kind


def _checked(boxes: Tensor, scores, iou_threshold, labels=None):
    """Checks the arguments of a tensor call as arrays are checked (on host views of the
    tensors); returns them as tensors, an empty ``boxes`` shaped (0, 4)."""
    _library.check_device(boxes, "boxes")
    b, _, _ = _boxes_and_scores(_library.host(boxes), _library.host(scores))
    if labels is not None:
        as_labels(_library.host(labels), b.shape[0])
        labels = _library.as_tensor(labels)
    return (boxes.reshape(b.shape), _library.as_tensor(scores), check_fraction(iou_threshold, "iou_threshold"),
            labels)


@torch.fx.wrap
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
        ``(x1, y1, x2, y2)`` boxes, finite.
    scores : array or Tensor, shape (N,)
        Finite scores.
    iou_threshold : float in [0, 1]
        A box is suppressed when its IoU with a kept box is ``> iou_threshold``.

    Returns
    -------
    keep : int64 array or Tensor, shape (K,)
        Indices of the kept boxes by decreasing score (equal scores: lower index first).

    Notes
    -----
    Each kept box is compared only with the boxes still alive, which are compacted after
    every step; on clustered detections that is far fewer comparisons than a scan of all
    later boxes, with the same result.
    """
    if not torch.jit.is_scripting():
        if not isinstance(boxes, Tensor):
            b, s, kind = _boxes_and_scores(boxes, scores)
            return like(_C.nms(b, s, check_fraction(iou_threshold, "iou_threshold")), kind)
        if _library.eager():
            boxes, scores, iou_threshold, _ = _checked(boxes, scores, iou_threshold)
    boxes, scores = compute_pair(boxes, scores)
    return torch.ops.pydetect.nms(boxes, scores, iou_threshold)


@torch.fx.wrap
def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression run independently within each label.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
    scores : array or Tensor, shape (N,)
    labels : integer array or Tensor, shape (N,)
        Boxes with different labels never suppress each other.
    iou_threshold : float in [0, 1]

    An empty ``boxes`` gives an empty result whatever the other arguments (which may then be
    None), as in torchvision.

    Returns
    -------
    keep : int64 array or Tensor, shape (K,)
        Kept indices of all labels by decreasing score (equal scores: lower index first).

    Notes
    -----
    torchvision offsets the boxes of each class by a large coordinate (for up to 4,000
    boxes on CPU) and runs one NMS; pydetect runs a true per-label NMS, in parallel over
    labels, which is what that trick approximates: IoUs are computed on the original
    coordinates, so no rounding from the offset can change a decision.
    """
    if not torch.jit.is_scripting():
        if not isinstance(boxes, Tensor):
            if as_boxes(boxes)[0].shape[0] == 0:
                return np.zeros(0, np.int64)
            b, s, kind = _boxes_and_scores(boxes, scores)
            lab = as_labels(labels, b.shape[0])
            return like(_C.batched_nms(b, s, lab, check_fraction(iou_threshold, "iou_threshold")), kind)
        if _library.eager():
            if boxes.numel() == 0:
                return torch.zeros(0, dtype=torch.int64, device=boxes.device)
            boxes, scores, iou_threshold, labels = _checked(boxes, scores, iou_threshold, labels)
    boxes, scores = compute_pair(boxes, scores)
    return torch.ops.pydetect.batched_nms(boxes, scores, labels.to(device=boxes.device, dtype=torch.int64),
                                          iou_threshold)


def nms_with_algorithm(boxes, scores, iou_threshold: float, algorithm: str) -> np.ndarray:
    """:func:`nms` of numpy (N, 4) boxes and (N,) scores by one named exact algorithm,
    ``"compaction"`` (the candidate list shrinks as boxes are suppressed) or ``"grid"`` (a
    spatial hash of the boxes); both give :func:`nms`'s result, which picks between them by
    size. For tests and the crossover benchmark that chose that size."""
    check_choice(algorithm, "algorithm", ("compaction", "grid"))
    b, s, _ = _boxes_and_scores(boxes, scores)
    chosen = _C.NmsAlgorithm.COMPACTION if algorithm == "compaction" else _C.NmsAlgorithm.GRID
    return _C.nms(b, s, check_fraction(iou_threshold, "iou_threshold"), chosen)


def soft_nms(boxes, scores, iou_threshold: float = 0.3, sigma: float = 0.5,
             score_threshold: float = 0.001, method: str = "gaussian"):
    """Soft non-maximum suppression (Bodla et al., "Soft-NMS", ICCV 2017).

    Instead of removing the neighbours of a selected box, soft-NMS lowers their scores:

    - ``"gaussian"``: every remaining score is multiplied by ``exp(-iou**2 / sigma)``;
    - ``"linear"``: a score is multiplied by ``1 - iou`` when ``iou > iou_threshold``.

    The box with the highest current score is selected next (equal scores: lower index
    first). Boxes whose score is below ``score_threshold`` are dropped — from the start
    and whenever a decay takes them below it.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
    scores : array or Tensor, shape (N,)
    iou_threshold : float in [0, 1], default 0.3
        Used by the linear method only.
    sigma : float > 0, default 0.5
        Width of the gaussian penalty.
    score_threshold : float >= 0, default 0.001
    method : {"gaussian", "linear"}

    Returns
    -------
    keep : int64 array or Tensor, shape (K,)
        Selected indices in selection order.
    kept_scores : array or Tensor, shape (K,)
        Their scores at the moment they were selected (non-increasing).
    """
    check_choice(method, "method", ("gaussian", "linear"))
    b, s, kind = _boxes_and_scores(boxes, scores)
    thr = check_fraction(iou_threshold, "iou_threshold")
    sigma = check_positive(sigma, "sigma")
    score_threshold = check_positive(score_threshold, "score_threshold", strict=False)
    method = _C.SoftNmsMethod.GAUSSIAN if method == "gaussian" else _C.SoftNmsMethod.LINEAR
    keep, kept = _C.soft_nms(b, s, thr, sigma, score_threshold, method)
    return like(keep, kind), like(kept, kind)
