"""RoI align and RoI max pooling, and their modules.

Semantics are torchvision.ops' (``roi_align``, ``roi_pool``, ``RoIAlign``, ``RoIPool``,
``MultiScaleRoIAlign``). For tensors the functions call the registered torch ops
``torch.ops.pydetect.roi_align`` / ``roi_pool`` (:mod:`pydetect.ops._library`: pydetect's C++
kernels on zero-copy numpy views of CPU tensors, CUDA kernels where built, the gradient,
autocast and fake kernels), so that they can be scripted (torch.jit.script), traced
(torch.fx, torch.compile, torch.export) and differentiated; numpy arrays go straight to the
C++ kernels. The extension never links against libtorch.

References
----------
R. Girshick, "Fast R-CNN", ICCV 2015 (RoI max pooling).
K. He, G. Gkioxari, P. Dollár, R. Girshick, "Mask R-CNN", ICCV 2017 (RoIAlign).
T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017, eq. (1)
(assigning RoIs to pyramid levels).
"""

import math
from typing import Dict, List, Tuple, Union

import numpy as np
import torch
import torch.fx
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2
from torch.nn.modules.utils import _pair

from pydetect import _C
from pydetect._validation import check_int, check_positive, check_size
from pydetect.ops import _library

__all__ = ["roi_align", "roi_pool", "RoIAlign", "RoIPool", "MultiScaleRoIAlign", "MAX_SAMPLING_RATIO"]

#: Largest ``sampling_ratio`` (samples per bin along each axis) of :func:`roi_align`; the
#: adaptive count ``ceil(bin size)`` is clamped to it too. torchvision has no bound: its
#: adaptive count overflows for finite but huge boxes. Bins up to this many feature pixels
#: wide get torchvision's exact result; wider ones are averaged over this many samples per
#: axis (65536 per bin), which bounds time and memory. The value is the kernel's
#: (``csrc/roi/roi_math.h``).
MAX_SAMPLING_RATIO = _C.ROI_MAX_SAMPLING_RATIO

_TENSOR_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------- checks
def _input_dtype(input, name="input") -> np.dtype:
    """The dtype the checks and C++ kernels use for ``input`` (half tensors: float32)."""
    if isinstance(input, Tensor):
        if input.dtype not in _TENSOR_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {input.dtype}")
        dtype = np.dtype(np.float64 if input.dtype == torch.float64 else np.float32)
    else:
        dtype = input.dtype
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    if input.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(input.shape)}")
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise ValueError(f"{name} must have H, W > 0, got {tuple(input.shape)}")
    return dtype


def _rois_numpy(boxes, dtype: np.dtype, num_images: int) -> np.ndarray:
    """(K, 5) rois (batch index, x1, y1, x2, y2) from a (K, 5) array or a list of (L, 4)."""

    def arr(x, name):
        a = _library.host(x).numpy() if isinstance(x, Tensor) else np.asarray(x)
        if a.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        return a.astype(dtype, copy=False)

    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            a = arr(b, f"boxes[{i}]")
            if a.size == 0:
                a = a.reshape(0, 4)
            if a.ndim != 2 or a.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must have shape (L, 4), got {tuple(a.shape)}")
            parts.append(np.concatenate([np.full((len(a), 1), i, dtype), a], axis=1))
        if len(boxes) > num_images:
            raise ValueError(f"boxes is a list of {len(boxes)} tensors but input holds {num_images} images")
        rois = np.concatenate(parts, axis=0) if parts else np.zeros((0, 5), dtype)
    else:
        rois = arr(boxes, "boxes")
        if rois.size == 0:
            rois = rois.reshape(0, 5)
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError("boxes must be a Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list "
                             f"of Tensor[L, 4], got shape {tuple(rois.shape)}")
    rois = np.ascontiguousarray(rois)
    if rois.size and not np.isfinite(rois).all():
        raise ValueError("boxes must be finite, got NaN or infinite values")
    idx = rois[:, 0]
    if idx.size and ((idx != np.floor(idx)).any() or idx.min() < 0 or idx.max() >= num_images):
        raise ValueError(f"boxes[:, 0] must be image indices in [0, {num_images}), got values in "
                         f"[{idx.min():g}, {idx.max():g}]")
    return rois


def _check_sampling_ratio(value) -> int:
    value = check_int(value, "sampling_ratio")
    if value > MAX_SAMPLING_RATIO:
        raise ValueError(f"sampling_ratio must be <= MAX_SAMPLING_RATIO ({MAX_SAMPLING_RATIO}) "
                         f"samples per bin and axis, got {value}")
    return value


def _check_aligned(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"aligned must be a bool, got {type(value).__name__}")
    return bool(value)


def _checked_pool_args(input, boxes, output_size, spatial_scale):
    """Checks the arguments common to both ops: ``((PH, PW), scale, rois (K, 5) array)``."""
    if isinstance(input, Tensor):
        _library.check_device(input, "input")
    dtype = _input_dtype(input)
    size = check_size(output_size, "output_size")
    scale = check_positive(spatial_scale, "spatial_scale")
    return size, scale, _rois_numpy(boxes, dtype, int(input.shape[0]))


def _op_rois(rois: np.ndarray, input: Tensor) -> Tensor:
    """Checked rois (in the dtype the input is computed in) on the input's device: on the CPU,
    a view of ``boxes`` when it already was such a tensor."""
    return torch.from_numpy(rois).to(input.device)


def _compute(input: Tensor) -> Tensor:
    """The input as computed: float16/bfloat16 in float32, with float32 boxes (the boxes are
    not rounded to half precision; the result is cast back to the input's dtype)."""
    if input.dtype == torch.float32 or input.dtype == torch.float64:
        return input
    return input.float()


def _as_rois(boxes: Union[Tensor, List[Tensor]], input: Tensor) -> Tensor:
    """(K, 5) rois in the input's dtype and device, built with torch ops only (scripted and
    traced calls; the eager path checks and builds them with :func:`_rois_numpy`)."""
    if isinstance(boxes, Tensor):
        rois = boxes
    else:
        parts: List[Tensor] = []
        for i, b in enumerate(boxes):
            parts.append(torch.cat([torch.full_like(b[:, :1], i), b], 1))
        rois = torch.cat(parts, 0) if len(parts) > 0 else torch.zeros((0, 5))
    return rois.to(device=input.device, dtype=input.dtype)


# ----------------------------------------------------------------------------- functional
@torch.fx.wrap
def roi_align(input: Tensor, boxes: Union[Tensor, List[Tensor]], output_size: BroadcastingList2[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign: average of bilinear samples in each bin of each region (Mask R-CNN).

    Parameters
    ----------
    input : Tensor or array, shape (N, C, H, W)
        Feature maps: float32 or float64; tensors may also be float16 or bfloat16 (computed
        in float32, returned in their dtype). A tensor that requires grad receives its
        gradient. CUDA tensors run on pydetect's CUDA kernels where those are built
        (:func:`pydetect.cuda_is_available`).
    boxes : Tensor or array, shape (K, 5), or list of N Tensor[L_i, 4]
        Regions ``(batch index, x1, y1, x2, y2)``, or one ``(x1, y1, x2, y2)`` list per
        image, in input-image coordinates (multiplied by ``spatial_scale``).
    output_size : int or (int, int)
        ``(PH, PW)`` bins per region.
    spatial_scale : float, default 1.0
        Feature-map size over image size (1/16 for a stride-16 map).
    sampling_ratio : int <= MAX_SAMPLING_RATIO (256), default -1
        Samples per bin along each axis; ``<= 0`` takes ``ceil(bin size)`` (adaptive),
        clamped to :data:`MAX_SAMPLING_RATIO`.
    aligned : bool, default False
        If True, shift box coordinates by -0.5 pixel (the pixel-centre convention of
        Detectron2). If False, the legacy behaviour: regions at least 1×1 feature pixels.

    Returns
    -------
    output : Tensor or array, shape (K, C, PH, PW)
        Same kind and dtype as ``input``. Samples more than one pixel outside the map
        count as 0 and receive no gradient (as in torchvision's CUDA kernel; its CPU kernel
        multiplies pixel (0, 0) by 0 for them, NaN when that pixel is not finite); samples on
        the border margin are clamped onto it.

    Notes
    -----
    Tensors call ``torch.ops.pydetect.roi_align``, so the function can be scripted and
    traced; the argument checks run eagerly only (not inside torch.jit.trace /
    torch.compile, where the op's own shape and index checks remain).
    """
    if not torch.jit.is_scripting():
        if not isinstance(input, Tensor):
            input = np.asarray(input)
            (ph, pw), scale, rois = _checked_pool_args(input, boxes, output_size, spatial_scale)
            sampling_ratio, aligned = _check_sampling_ratio(sampling_ratio), _check_aligned(aligned)
            return _C.roi_align_forward(np.ascontiguousarray(input), rois, scale, ph, pw, sampling_ratio, aligned)
        if _library.eager():
            output_size, spatial_scale, rois = _checked_pool_args(input, boxes, output_size, spatial_scale)
            sampling_ratio, aligned = _check_sampling_ratio(sampling_ratio), _check_aligned(aligned)
            boxes = _op_rois(rois, input)
    size = _pair(output_size)
    x = _compute(input)
    out = torch.ops.pydetect.roi_align(x, _as_rois(boxes, x), spatial_scale, size[0], size[1], sampling_ratio,
                                       aligned)
    return out.to(input.dtype)


@torch.fx.wrap
def roi_pool(input: Tensor, boxes: Union[Tensor, List[Tensor]], output_size: BroadcastingList2[int],
             spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling (Fast R-CNN): the maximum of each bin of each region.

    Parameters
    ----------
    input : Tensor or array, shape (N, C, H, W)
        As in :func:`roi_align`.
    boxes : Tensor or array, shape (K, 5), or list of N Tensor[L_i, 4]
        As in :func:`roi_align`.
    output_size : int or (int, int)
    spatial_scale : float, default 1.0

    Returns
    -------
    output : Tensor or array, shape (K, C, PH, PW)
        Box corners are rounded to feature pixels (``round(x * spatial_scale)``), regions
        are at least 1×1 and inclusive of their end pixel; an empty bin gives 0. The
        gradient flows to the argmax of each bin. Windows are computed in floating point
        and clipped to the map, so that boxes beyond the integer range (where
        torchvision's ``int`` casts are undefined) still pool the pixels they cover.
    """
    if not torch.jit.is_scripting():
        if not isinstance(input, Tensor):
            input = np.asarray(input)
            (ph, pw), scale, rois = _checked_pool_args(input, boxes, output_size, spatial_scale)
            return _C.roi_pool_forward(np.ascontiguousarray(input), rois, scale, ph, pw)[0]
        if _library.eager():
            output_size, spatial_scale, rois = _checked_pool_args(input, boxes, output_size, spatial_scale)
            boxes = _op_rois(rois, input)
    size = _pair(output_size)
    x = _compute(input)
    return torch.ops.pydetect.roi_pool(x, _as_rois(boxes, x), spatial_scale, size[0], size[1])[0].to(input.dtype)


# ----------------------------------------------------------------------------- modules
class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`; the arguments are checked here."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float = 1.0, sampling_ratio: int = -1,
                 aligned: bool = False):
        super().__init__()
        self.output_size = check_size(output_size, "output_size")
        self.spatial_scale = check_positive(spatial_scale, "spatial_scale")
        self.sampling_ratio = _check_sampling_ratio(sampling_ratio)
        self.aligned = _check_aligned(aligned)

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class RoIPool(nn.Module):
    """Module form of :func:`roi_pool`; the arguments are checked here."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = check_size(output_size, "output_size")
        self.spatial_scale = check_positive(spatial_scale, "spatial_scale")

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


def _log2(x: float) -> float:
    # math.log2 is not available in TorchScript; every use rounds the result to an integer.
    return math.log(x) / math.log(2.0)


def _feature_scales(maps: List[Tensor], image_shapes: List[Tuple[int, int]]) -> List[float]:
    # torchvision's rule: each map's height over the largest image height, rounded to a
    # power of two.
    max_h = 0
    for shape in image_shapes:
        max_h = max(max_h, shape[0])
    scales: List[float] = []
    for f in maps:
        scales.append(2.0 ** round(_log2(float(f.shape[-2]) / float(max_h))))
    return scales


def _roi_levels(boxes: Tensor, scales: List[float], canonical_scale: float, canonical_level: int) -> Tensor:
    k_min = int(round(-_log2(scales[0])))
    k_max = int(round(-_log2(scales[-1])))
    size = torch.sqrt(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0))
    # torchvision's rule to the letter (its epsilon added after the log), so that a RoI on a level
    # boundary goes where torchvision sends it.
    level = torch.floor(canonical_level + torch.log2(size / canonical_scale) + 1e-6)
    # A NaN box (its size NaN) goes to the finest level, as clamp would not place it anywhere.
    return (torch.nan_to_num(level, nan=float(k_min)).clamp(k_min, k_max) - k_min).to(torch.int64)


def _check_multiscale_inputs(features, boxes, image_shapes, featmap_names) -> None:
    missing = [n for n in featmap_names if n not in features]
    if missing:
        raise ValueError(f"features lacks the maps {missing}; it has {list(features)}")
    if not isinstance(boxes, (list, tuple)):
        raise TypeError("boxes must be a list of Tensor[L_i, 4], one per image")
    if len(image_shapes) != len(boxes):
        raise ValueError(f"image_shapes has {len(image_shapes)} entries for {len(boxes)} images")


@torch.fx.wrap
def _multiscale_roi_align(features: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]],
                          featmap_names: List[str], output_size: Tuple[int, int], sampling_ratio: int,
                          canonical_scale: float, canonical_level: int, aligned: bool) -> Tensor:
    # A function of its own so that torch.fx records a MultiScaleRoIAlign call as one node.
    if not torch.jit.is_scripting():
        _check_multiscale_inputs(features, boxes, image_shapes, featmap_names)
    maps = [features[name] for name in featmap_names]
    scales = _feature_scales(maps, image_shapes)
    rois = _as_rois(boxes, maps[0])
    if len(maps) == 1:
        return roi_align(maps[0], rois, output_size, scales[0], sampling_ratio, aligned)
    levels = _roi_levels(rois[:, 1:], scales, canonical_scale, canonical_level)
    # Every RoI has exactly one level, so every row is written below: no zero fill needed.
    out = maps[0].new_empty((rois.shape[0], maps[0].shape[1], output_size[0], output_size[1]))
    for level in range(len(maps)):
        # Every level is pooled, even with no RoI: no data-dependent branch for tracers.
        idx = torch.nonzero(levels == level).squeeze(1)
        pooled = roi_align(maps[level], rois[idx], output_size, scales[level], sampling_ratio, aligned)
        # In place: an out-of-place index_copy copied the whole (R, C, PH, PW) result once per
        # level (4 x 100 MB for 2,000 RoIs of 256 channels), more time than the pooling itself.
        out.index_copy_(0, idx, pooled)
    return out


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over several feature maps (FPN levels), each RoI on one level.

    A RoI of area ``wh`` goes to level ``floor(k0 + log2(sqrt(wh) / s0))`` (Lin et al.
    2017, eq. 1), clamped to the available levels, with ``s0 = canonical_scale`` and
    ``k0 = canonical_level``. Scales of the maps are inferred from their sizes relative
    to the largest image, rounded to powers of two (torchvision's rule).

    Parameters
    ----------
    featmap_names : list of str
        Keys of the feature dict to pool from, finest first.
    output_size : int or (int, int)
    sampling_ratio : int <= MAX_SAMPLING_RATIO
    canonical_scale : float, default 224
    canonical_level : int, default 4
    aligned : bool, default False

    Call: ``forward(features: dict[str, Tensor (N, C, H_l, W_l)], boxes: list of N
    Tensor[L_i, 4], image_shapes: list of N (height, width)) -> Tensor (sum L_i, C, PH, PW)``.
    The repr shows torchvision's three settings, and the others where they differ from
    their defaults.
    """

    def __init__(self, featmap_names, output_size, sampling_ratio, *, canonical_scale=224,
                 canonical_level=4, aligned=False):
        super().__init__()
        if isinstance(featmap_names, str) or not featmap_names:
            raise ValueError("featmap_names must be a non-empty list of feature names")
        self.featmap_names = [str(n) for n in featmap_names]
        self.output_size = check_size(output_size, "output_size")
        self.sampling_ratio = _check_sampling_ratio(sampling_ratio)
        self.canonical_scale = check_positive(canonical_scale, "canonical_scale")
        self.canonical_level = check_int(canonical_level, "canonical_level")
        self.aligned = _check_aligned(aligned)

    def levels(self, boxes: Tensor, scales: List[float]) -> Tensor:
        """Index of the level each RoI of the concatenated ``boxes`` (K, 4) goes to."""
        return _roi_levels(boxes, scales, self.canonical_scale, self.canonical_level)

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor],
                image_shapes: List[Tuple[int, int]]) -> Tensor:
        return _multiscale_roi_align(features, boxes, image_shapes, self.featmap_names, self.output_size,
                                     self.sampling_ratio, self.canonical_scale, self.canonical_level, self.aligned)

    def extra_repr(self) -> str:
        text = (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")
        for name, default in (("canonical_scale", 224), ("canonical_level", 4), ("aligned", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text
