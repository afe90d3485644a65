"""Input checks and conversions shared by every public wrapper.

Every public function converts its inputs here, so that bad input raises one kind of
error with one style of message: ``TypeError`` for a wrong type or dtype, ``ValueError``
for a wrong shape or value, each naming the argument and what was expected.

Arrays may be numpy arrays, CPU torch tensors or nested sequences. Functions return the
same kind they were given (:func:`to_numpy` records it, :func:`like` restores it), so the
C++ kernels only ever see C-contiguous numpy arrays of an exact dtype.
"""

from __future__ import annotations

import math
import numbers
import os
import re

import numpy as np
import torch

__all__ = [
    "to_numpy",
    "like",
    "as_float_array",
    "as_boxes",
    "as_vector",
    "as_labels",
    "check_fraction",
    "check_positive",
    "check_int",
    "check_choice",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT64_MAX = int(np.iinfo(np.int64).max)


def _is_torch_tensor(x) -> bool:
    return isinstance(x, torch.Tensor)


def to_numpy(x, name: str):
    """Returns ``(array, kind)`` with kind ``"torch"`` for a tensor, else ``"numpy"``."""
    if _is_torch_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be a CPU tensor, got a tensor on {x.device}")
        return x.detach().numpy(), "torch"
    if isinstance(x, np.ndarray):
        return x, "numpy"
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be an array-like of numbers ({exc})") from None
    return arr, "numpy"


def like(arr: np.ndarray, kind: str):
    """Returns ``arr`` as the kind :func:`to_numpy` reported (numpy or torch)."""
    if kind == "torch":
        return torch.from_numpy(np.ascontiguousarray(arr))
    return arr


def _float_dtype(arr: np.ndarray, name: str, dtype=None) -> np.dtype:
    if arr.dtype.kind not in "biuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dtype is not None:
        return np.dtype(dtype)
    # float32 and float64 are kept; integers and float16 compute in float32.
    return arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float32)


def as_float_array(x, name: str, *, dtype=None, finite: bool = True):
    """Converts to a C-contiguous float32/float64 array; returns ``(array, kind)``."""
    arr, kind = to_numpy(x, name)
    arr = np.ascontiguousarray(arr, dtype=_float_dtype(arr, name, dtype))
    if finite and arr.size and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinite"
        raise ValueError(f"{name} must be finite, got {bad} values")
    return arr, kind


def as_boxes(x, name: str = "boxes", *, dtype=None):
    """(N, 4) float boxes; an empty input of any shape with 0 elements gives (0, 4)."""
    arr, kind = as_float_array(x, name, dtype=dtype)
    if arr.size == 0 and arr.ndim <= 2 and (arr.ndim < 2 or arr.shape[-1] in (0, 4)):
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(arr.shape)}")
    return arr, kind


def as_vector(x, n: int, name: str, *, dtype=None, finite: bool = True):
    """(n,) float vector matching n boxes."""
    arr, kind = as_float_array(x, name, dtype=dtype, finite=finite)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the boxes, got {tuple(arr.shape)}")
    return arr, kind


def as_labels(x, n: int, name: str = "labels"):
    """(n,) int64 labels."""
    arr, _ = to_numpy(x, name)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and arr.size == 0):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = as_int64(arr, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the boxes, got {tuple(arr.shape)}")
    return arr


def _as_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if _is_torch_tensor(value) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, np.ndarray) and value.shape == ():
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int or fraction beyond float's range, e.g. 10**400
        raise ValueError(f"{name} must be finite, got a number beyond the float range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_fraction(value, name: str) -> float:
    """A real number in [0, 1]."""
    value = _as_real(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_positive(value, name: str, *, strict: bool = True) -> float:
    """A real number > 0 (``strict``) or >= 0."""
    value = _as_real(value, name)
    if value < 0 or (strict and value == 0):
        raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {value}")
    return value


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bools are refused) in int64's range, optionally in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    # Every integer ends up in numpy, torch or C++ as int64 at most: refuse what would overflow there.
    maximum = INT64_MAX if maximum is None else min(maximum, INT64_MAX)
    if not -INT64_MAX - 1 <= value <= maximum:
        shown = value if value.bit_length() <= 128 else f"a {value.bit_length()}-bit integer"
        raise ValueError(f"{name} must be <= {maximum}, got {shown}" if value > 0
                         else f"{name} must be >= {-INT64_MAX - 1}, got {shown}")
    return value


def check_choice(value, name: str, choices) -> str:
    """One of the strings in ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def as_image(x, name: str = "image") -> np.ndarray:
    """An image as a C-contiguous uint8 array, (H, W) grey or (H, W, 3) RGB.

    uint8 is taken as is. Float images must lie in [0, 1] and are scaled by 255 and
    rounded; other integer types must lie in [0, 255]. A (H, W, 1) image becomes (H, W).
    """
    arr, _ = to_numpy(x, name)
    if arr.dtype.kind not in "uif" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a uint8 or float image, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3), got {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"a float {name} must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
        return np.ascontiguousarray(np.rint(arr * 255.0).astype(np.uint8))
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"an integer {name} must lie in [0, 255], got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr.astype(np.uint8))


def check_size(value, name: str, *, minimum: int = 1) -> tuple:
    """An int n (meaning (n, n)) or a (height, width) pair of ints, each >= minimum."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        height, width = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}") from None
    return (check_int(height, f"{name} height", minimum=minimum),
            check_int(width, f"{name} width", minimum=minimum))


# ---- cascade family: checked conversions to the int32 / float32 the kernels use ----------
# numpy's astype wraps out-of-range integers and truncates floats without a word, and float32
# turns 1e39 into inf: these helpers refuse instead, naming the argument.

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_int32(value, name: str, *, minimum: int = INT32_MIN) -> int:
    """An integer in [minimum, 2**31 - 1] (a C int)."""
    value = check_int(value, name, minimum=minimum)
    if value > INT32_MAX:
        raise ValueError(f"{name} must be <= {INT32_MAX}, got {value}")
    return value


def as_int32_array(x, name: str) -> np.ndarray:
    """A C-contiguous int32 array of ``x``: integers, or floats with integral values, each in
    the int32 range; anything else raises (no wrap-around, no truncation)."""
    arr, _ = to_numpy(x, name)
    if arr.dtype == object:  # e.g. Python ints beyond int64: as float64, exact in int32's range
        try:
            arr = arr.astype(np.float64)
        except OverflowError:
            raise ValueError(f"{name} must hold values in [{INT32_MIN}, {INT32_MAX}] (int32), "
                             "got an integer beyond the float range") from None
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold integers, got objects") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size:
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} must hold integers, got NaN or infinite values")
            if (arr != np.trunc(arr)).any():
                raise ValueError(f"{name} must hold integers, got non-integral values")
        lo, hi = arr.min(), arr.max()
        if lo < INT32_MIN or hi > INT32_MAX:
            raise ValueError(f"{name} must hold values in [{INT32_MIN}, {INT32_MAX}] (int32), "
                             f"got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr, dtype=np.int32)


def as_float32_array(x, name: str) -> np.ndarray:
    """A C-contiguous float32 array of ``x`` whose values are all finite after the rounding to
    float32 (|value| <= 3.4e38)."""
    arr, _ = to_numpy(x, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.size and not np.isfinite(out).all():
        bad = "NaN" if np.isnan(out).any() else "infinite (or beyond float32's 3.4e38)"
        raise ValueError(f"{name} must be finite, got {bad} values")
    return out


def check_scale_factor(value, name: str = "scale_factor") -> float:
    """A finite real > 1: the ratio between successive image pyramid scales."""
    value = _as_real(value, name)
    if not value > 1.0:
        raise ValueError(f"{name} must be > 1, got {value}")
    return value


# ---------------------------------------------------------------------------------------
# Errors hardening: int64 arrays, finite reals and the image-size cap, shared by data, eval,
# viz and the CLI.
# ---------------------------------------------------------------------------------------
def as_int64(arr: np.ndarray, name: str) -> np.ndarray:
    """An integer array as C-contiguous int64; uint64 values >= 2**63 are refused, not wrapped."""
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > INT64_MAX:
        raise ValueError(f"{name} must be <= {INT64_MAX}, got {int(arr.max())}")
    return np.ascontiguousarray(arr, dtype=np.int64)


# ---- tiled inference and streaming (large images and many images) -------------------------

def check_bool(value, name: str) -> bool:
    """A bool (numpy bools too); integers and other values are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def check_real(value, name: str) -> float:
    """A finite real number (bools are refused)."""
    return _as_real(value, name)


#: Default cap on the pixels of an image pydetect decodes or resizes to: 2**27 pixels
#: (0.4 GB as RGB uint8), below Pillow's decompression-bomb limit so that its header check
#: can enforce it. The environment variable PYDETECT_MAX_IMAGE_PIXELS overrides it.
MAX_IMAGE_PIXELS = 2**27


def max_image_pixels() -> int:
    """The image-size cap: PYDETECT_MAX_IMAGE_PIXELS if set, else :data:`MAX_IMAGE_PIXELS`."""
    text = os.environ.get("PYDETECT_MAX_IMAGE_PIXELS")
    if text is None:
        return MAX_IMAGE_PIXELS
    try:
        return check_int(int(text), "PYDETECT_MAX_IMAGE_PIXELS", minimum=1)
    except ValueError:
        raise ValueError(f"the environment variable PYDETECT_MAX_IMAGE_PIXELS must be a positive integer, "
                         f"got {text!r}") from None


def check_image_size(height: int, width: int, name: str) -> None:
    """Refuses an image of more than :func:`max_image_pixels` pixels before it is allocated."""
    limit = max_image_pixels()
    if height * width > limit:
        raise ValueError(f"{name} of {width:.0f}x{height:.0f} pixels exceeds the limit of {limit} pixels "
                         "(set PYDETECT_MAX_IMAGE_PIXELS to raise it)")


#: Most threads a ``num_threads`` parameter may ask for (torch crashes when asked for 100,000);
#: the same cap as pydetect.MAX_NUM_THREADS, the C++ kernels' own (tests check they agree).
MAX_THREADS = 1024


def check_num_threads(value, name: str = "num_threads"):
    """None (leave the thread count alone) or an integer in [1, MAX_THREADS]."""
    return None if value is None else check_int(value, name, minimum=1, maximum=MAX_THREADS)


# ---------------------------------------------------------------------------------------
# Devices (CUDA): the ``device`` parameter of the CNN detectors. Only its form is checked
# here; whether the GPU it names exists is checked when the detector uses it
# (pydetect.engine.resolve_device).
# ---------------------------------------------------------------------------------------
def check_device(value, name: str = "device"):
    """The ``torch.device`` for ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device of type
    cpu or cuda; TypeError for another type, ValueError for another device."""
    expected = "'cpu', 'cuda', 'cuda:N' or a torch.device of type cpu or cuda"
    if isinstance(value, torch.device):
        if value.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return torch.device(value)


#: The largest image scale factor and resize range the detectors accept: beyond it the
#: resized images no longer fit in memory.
MAX_SCALE = 8.0


def check_scale_range(value, name):
    """None, or a pair (lo, hi) with 0 < lo <= hi <= :data:`MAX_SCALE` (a stretch or
    scale-jitter range); returns the pair of floats (or None)."""
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be None or a pair (lo, hi), got {value!r}") from None
    lo, hi = check_positive(lo, f"{name} lo"), check_positive(hi, f"{name} hi")
    if not lo <= hi <= MAX_SCALE:
        raise ValueError(f"{name} must satisfy 0 < lo <= hi <= {MAX_SCALE:g}, got {value!r}")
    return lo, hi

