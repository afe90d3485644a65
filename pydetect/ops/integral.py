"""Integral images (summed-area tables) in OpenCV's layout.

For an ``(H, W)`` image the tables are ``(H + 1, W + 1)`` with a zero first row and column,
so that the sum of the rectangle ``[x, x + w) x [y, y + h)`` is
``S[y + h, x + w] - S[y, x + w] - S[y + h, x] + S[y, x]`` without any boundary case.
"""

from __future__ import annotations

import numpy as np

from pydetect import _C
from pydetect._validation import to_numpy, like

__all__ = ["integral_image"]


_SUM_DTYPES = (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float64))
_INT32_MAX = 2**31 - 1


_SUM_TYPES = {"int32": _C.IntegralSum.INT32, "int64": _C.IntegralSum.INT64, "float64": _C.IntegralSum.FLOAT64}


def _sum_dtype(arr: np.ndarray, dtype) -> str:
    """Name of the sum table's dtype (arr: a validated uint8 or float image)."""
    if arr.dtype != np.uint8:
        return "float64"
    if dtype is None:
        # The tilted table's entries are partial sums too: the same bound covers them.
        return "int32" if 255 * arr.size <= _INT32_MAX else "int64"
    dtype = np.dtype(dtype)
    if dtype == np.int32 and 255 * arr.size > _INT32_MAX:
        total = int(arr.sum(dtype=np.int64))
        if total > _INT32_MAX:
            raise ValueError(f"dtype=int32 cannot hold this image's sum ({total} > 2**31 - 1); "
                             "use dtype=None or numpy.int64")
    return dtype.name


def integral_image(gray, squared: bool = False, tilted: bool = False, dtype=None, out=None):
    r"""Sum, squared-sum and 45-degree tilted integral images of a grey image.

    .. math::

        S(X, Y) = \sum_{y < Y,\ x < X} I(x, y), \qquad
        Q(X, Y) = \sum_{y < Y,\ x < X} I(x, y)^2, \qquad
        T(X, Y) = \sum_{y < Y,\ |x - X + 1| \le Y - y - 1} I(x, y)

    The tilted table (Lienhart & Maydt, "An extended set of Haar-like features for rapid
    object detection", ICIP 2002) sums the triangle opening upwards from pixel
    ``(X - 1, Y - 1)``; it makes 45-degree rotated Haar rectangles four look-ups.
    The values and layout equal ``cv2.integral``, ``cv2.integral2`` and ``cv2.integral3``.

    Parameters
    ----------
    gray : array or Tensor, shape (H, W)
        uint8, float32 or float64 image (other integer types holding values in [0, 255]
        are taken as uint8).
    squared : bool, default False
        Also return the squared-sum table (float64, as OpenCV's; exact integers for uint8
        images below 1.38e11 pixels, where ``255**2 * H * W`` reaches 2**53).
    tilted : bool, default False
        Also return the tilted table (same dtype as the sum).
    dtype : {None, numpy.int32, numpy.int64, numpy.float64}
        Dtype of the sum and tilted tables. ``None``: for uint8 input, int32 (OpenCV's
        default) when no image of that size can reach 2**31 (``255 * H * W < 2**31``, up
        to ~8.4M pixels), else int64 (where ``cv2.integral`` would wrap around unless asked
        for a wider ``sdepth``); float64 for float input. ``numpy.int32`` for an image whose
        sum reaches 2**31 is a ValueError rather than a wrapped table. float input always
        gives float64.

    out : numpy array or tuple of them, optional
        Tables to write into instead of new arrays, one per table returned and in the same
        order: C-contiguous, writeable, shape (H + 1, W + 1), of exactly the table's dtype, not
        sharing memory with ``gray`` or each other. Repeated calls then reuse warm memory
        rather than pay for fresh pages (for a 4096 x 4096 image, about as long as computing
        the table). Returned as given.

    Returns
    -------
    sum : array or Tensor, shape (H + 1, W + 1)
        Alone when ``squared`` and ``tilted`` are False, otherwise the tuple
        ``(sum[, squared][, tilted])`` in that order. With ``out``: those arrays.

    Examples
    --------
    >>> s = integral_image(np.ones((2, 3), np.uint8))
    >>> int(s[2, 3])
    6
    """
    arr, kind = to_numpy(gray, "gray")
    if arr.ndim != 2:
        raise ValueError(f"gray must have shape (H, W), got {tuple(arr.shape)}")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise TypeError(f"gray must be a uint8 or float image, got dtype {arr.dtype}")
    if dtype is not None and np.dtype(dtype) not in _SUM_DTYPES:
        raise ValueError(f"dtype must be None, numpy.int32, numpy.int64 or numpy.float64, got {dtype!r}")
    if arr.dtype.kind in "iu" and arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"an integer gray image must lie in [0, 255], got values in "
                             f"[{arr.min()}, {arr.max()}]")
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if dtype is not None and np.dtype(dtype).kind == "i":
            raise ValueError(f"dtype={np.dtype(dtype)} needs a uint8 image; float images give float64 sums")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if arr.size and not np.isfinite(arr).all():
            raise ValueError("gray must be finite, got NaN or infinite values")
    arr = np.ascontiguousarray(arr)
    sum_dtype = _sum_dtype(arr, dtype)
    if out is not None:
        tables = _check_out(out, arr, bool(squared), bool(tilted), sum_dtype)
        result = _C.integral_image(arr, bool(squared), bool(tilted), _SUM_TYPES[sum_dtype], **tables)
        given = tuple(v for v in result if v is not None)
        return given[0] if len(given) == 1 else given
    s, q, t = _C.integral_image(arr, bool(squared), bool(tilted), _SUM_TYPES[sum_dtype])
    out = [like(s, kind)]
    if squared:
        out.append(like(q, kind))
    if tilted:
        out.append(like(t, kind))
    return out[0] if len(out) == 1 else tuple(out)


def _check_out(out, image, squared, tilted, sum_dtype) -> dict:
    """``out`` as the native call's out_sum / out_squared / out_tilted keywords, checked."""
    names = ["out_sum"] + (["out_squared"] if squared else []) + (["out_tilted"] if tilted else [])
    dtypes = [np.dtype(sum_dtype)] + ([np.dtype(np.float64)] if squared else []) + (
        [np.dtype(sum_dtype)] if tilted else [])
    arrays = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(arrays) != len(names):
        raise ValueError(f"out must hold {len(names)} array(s), one per table returned ({', '.join(n[4:] for n in names)}), "
                         f"got {len(arrays)}")
    shape = (image.shape[0] + 1, image.shape[1] + 1)
    for i, (a, dt) in enumerate(zip(arrays, dtypes)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"out[{i}] must be a numpy array, got {type(a).__name__}")
        if a.dtype != dt or a.shape != shape or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"out[{i}] must be a writeable C-contiguous {dt} array of shape {shape}, got a "
                             f"{'read-only ' if not a.flags.writeable else ''}{a.dtype} array of shape {a.shape}")
        others = [image] + arrays[:i]
        if any(np.shares_memory(a, b) for b in others):
            raise ValueError(f"out[{i}] must not share memory with gray or another table")
    return dict(zip(names, arrays))
