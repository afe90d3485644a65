"""Box utilities: area, pairwise IoU, format conversion, clipping, small-box removal.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (width = ``x2 - x1``), like
torchvision.ops; each function accepts numpy arrays or CPU torch tensors of float32 or
float64 (integers and float16 compute in float32) and returns the kind it was given.
Results equal torchvision's bit for bit in float32 (same operation order).
:func:`box_iou` of tensors calls the registered op ``torch.ops.pydetect.box_iou`` (scriptable,
traceable, CUDA where pydetect has CUDA kernels).
"""

from typing import Tuple

import numpy as np
import torch
import torch.fx
from torch import Tensor

from pydetect import _C
from pydetect._validation import as_boxes, check_choice, check_positive, like
from pydetect.ops import _library

__all__ = ["box_area", "box_iou", "box_convert", "clip_boxes", "remove_small_boxes"]

_FORMATS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}


def box_area(boxes):
    """Areas of boxes.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
        ``(x1, y1, x2, y2)`` boxes.

    Returns
    -------
    areas : array or Tensor, shape (N,)
        ``(x2 - x1) * (y2 - y1)``; an inverted box has a negative area, as in torchvision.
    """
    arr, kind = as_boxes(boxes)
    return like(_C.box_area(arr), kind)


@torch.fx.wrap
def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair of boxes.

    Parameters
    ----------
    boxes1 : array or Tensor, shape (N, 4)
    boxes2 : array or Tensor, shape (M, 4)

    Returns
    -------
    iou : array or Tensor, shape (N, M)
        ``|a ∩ b| / (|a| + |b| - |a ∩ b|)``. Two zero-area boxes give NaN (0 / 0), as in
        torchvision. Mixed float32/float64 inputs compute in float64. Rows are computed
        in parallel (:func:`pydetect.set_num_threads`).
    """
    if not torch.jit.is_scripting():
        if not isinstance(boxes1, Tensor):
            a, kind = as_boxes(boxes1, "boxes1")
            b, _ = as_boxes(boxes2, "boxes2")
            dtype = np.result_type(a.dtype, b.dtype)
            return like(_C.box_iou(a.astype(dtype, copy=False), b.astype(dtype, copy=False)), kind)
        if _library.eager():
            _library.check_device(boxes1, "boxes1")
            a, _ = as_boxes(_library.host(boxes1), "boxes1")
            b, _ = as_boxes(_library.host(boxes2), "boxes2")
            boxes1, boxes2 = boxes1.reshape(a.shape), _library.as_tensor(boxes2).reshape(b.shape)
    boxes1, boxes2 = _library.compute_pair(boxes1, boxes2)
    return torch.ops.pydetect.box_iou(boxes1, boxes2)


def box_convert(boxes, in_fmt: str, out_fmt: str):
    """Converts boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
    in_fmt, out_fmt : {"xyxy", "xywh", "cxcywh"}
        ``xywh`` is the top-left corner with width and height (COCO's bbox); ``cxcywh`` is
        the centre with width and height.

    Returns
    -------
    converted : array or Tensor, shape (N, 4)
    """
    check_choice(in_fmt, "in_fmt", tuple(_FORMATS))
    check_choice(out_fmt, "out_fmt", tuple(_FORMATS))
    arr, kind = as_boxes(boxes)
    return like(_C.box_convert(arr, _FORMATS[in_fmt], _FORMATS[out_fmt]), kind)


def _image_size(size) -> Tuple[float, float]:
    try:
        height, width = size
    except (TypeError, ValueError):
        raise TypeError(f"size must be a (height, width) pair, got {size!r}") from None
    return (check_positive(height, "size[0] (height)", strict=False),
            check_positive(width, "size[1] (width)", strict=False))


def clip_boxes(boxes, size):
    """Clips boxes to an image.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
    size : (height, width)
        Image size; x is clamped to ``[0, width]`` and y to ``[0, height]``.

    Returns
    -------
    clipped : array or Tensor, shape (N, 4)
    """
    height, width = _image_size(size)
    arr, kind = as_boxes(boxes)
    return like(_C.clip_boxes(arr, height, width), kind)


def remove_small_boxes(boxes, min_size: float):
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
    min_size : float
        Minimum side length, >= 0.

    Returns
    -------
    keep : int64 array or Tensor, shape (K,)
        Indices in increasing order.
    """
    min_size = check_positive(min_size, "min_size", strict=False)
    arr, kind = as_boxes(boxes)
    return like(_C.remove_small_boxes(arr, min_size), kind)
