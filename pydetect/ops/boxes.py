"""Box utilities: area, pairwise IoU, format conversion, clipping, small-box removal.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (width = ``x2 - x1``), like
torchvision.ops; each function accepts numpy arrays or CPU torch tensors of float32 or
float64 (integers and float16 compute in float32) and returns the kind it was given.
Results equal torchvision's bit for bit in float32 (same operation order).
:func:`box_iou` of tensors calls the registered op ``torch.ops.pydetect.box_iou`` (scriptable,
traceable, CUDA where pydetect has CUDA kernels). :func:`box_area` and :func:`box_convert`
script too (``torch.jit.script``), as torchvision's do: scripted, traced or compiled they
compute with torch's elementwise ops (any device, differentiable) in the C++ kernels'
operation order, so that they equal the eager calls bit for bit; eagerly they call the C++.
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

_FORMATS = {"xyxy": _C.BoxFormat.XYXY, "xywh": _C.BoxFormat.XYWH, "cxcywh": _C.BoxFormat.CXCYWH}


@torch.fx.wrap
def box_area(boxes: Tensor) -> Tensor:
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
    if not torch.jit.is_scripting():
        if not isinstance(boxes, Tensor) or _library.eager():
            arr, kind = as_boxes(boxes)
            return like(_C.box_area(arr), kind)
    b = _tensor_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # csrc/boxes/box_math.h: box_area


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


@torch.fx.wrap
def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
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
        Computed through ``xyxy`` (also from a format to itself, other than ``xyxy``, so
        that ``xywh -> xywh`` rounds as ``x + w - x`` does).
    """
    if not torch.jit.is_scripting():
        if not isinstance(boxes, Tensor) or _library.eager():
            check_choice(in_fmt, "in_fmt", tuple(_FORMATS))
            check_choice(out_fmt, "out_fmt", tuple(_FORMATS))
            arr, kind = as_boxes(boxes)
            return like(_C.box_convert(arr, _FORMATS[in_fmt], _FORMATS[out_fmt]), kind)
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    b = _tensor_boxes(boxes)
    if in_fmt == "xyxy" and out_fmt == "xyxy":
        return b.clone()  # a new tensor, as the C++ path gives
    return _from_xyxy(_to_xyxy(b, in_fmt), out_fmt)


# ----------------------------------------------------------------------------- tensor path
# What box_area and box_convert compute when scripted, traced or compiled: torch's ops in
# the operation order of csrc/boxes/box_ops.cpp (to_xyxy, from_xyxy) and box_math.h, so
# the results equal the C++ kernels' bit for bit (tests/ops/test_torch_ops.py checks it). The
# argument checks are those of the eager path that need no tensor values (as for box_iou,
# finiteness is not checked: that would read the values).
def _check_format(fmt: str, name: str) -> None:
    if fmt not in ["xyxy", "xywh", "cxcywh"]:
        raise ValueError(name + " must be one of 'xyxy', 'xywh', 'cxcywh'; got '" + fmt + "'")


def _tensor_boxes(boxes: Tensor) -> Tensor:
    """:func:`pydetect._validation.as_boxes` for a tensor, without reading its values: float32
    and float64 kept, other dtypes computing in float32; an empty input of (0,), (0, 0) or
    (0, 4) as (0, 4). torch.jit.trace records the conversion only (the shape tests would be
    constants of the trace)."""
    if boxes.dtype != torch.float32 and boxes.dtype != torch.float64:
        boxes = boxes.to(torch.float32)
    if torch.jit.is_tracing():
        return boxes
    if boxes.numel() == 0 and boxes.dim() <= 2 and (boxes.dim() < 2 or boxes.shape[-1] in [0, 4]):
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = ", ".join([str(s) for s in boxes.shape])
        raise ValueError("boxes must have shape (N, 4), got (" + shape + ("," if boxes.dim() == 1 else "") + ")")
    return boxes


def _to_xyxy(b: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return b
    x, y, w, h = b.unbind(1)
    if fmt == "xywh":
        return torch.stack([x, y, x + w, y + h], 1)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], 1)  # cxcywh


def _from_xyxy(b: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return b
    x1, y1, x2, y2 = b.unbind(1)
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], 1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)  # cxcywh


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
