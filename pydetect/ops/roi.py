"""RoI align and RoI max pooling with autograd, and their modules.

Semantics are torchvision.ops' (``roi_align``, ``roi_pool``, ``RoIAlign``, ``RoIPool``,
``MultiScaleRoIAlign``). The kernels are pydetect's C++ (``csrc/roi``), called on zero-copy
numpy views of CPU tensors; the gradient is a ``torch.autograd.Function`` written here, so
the extension never links against libtorch.

References
----------
R. Girshick, "Fast R-CNN", ICCV 2015 (RoI max pooling).
K. He, G. Gkioxari, P. Dollár, R. Girshick, "Mask R-CNN", ICCV 2017 (RoIAlign).
T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017, eq. (1)
(assigning RoIs to pyramid levels).
"""

from __future__ import annotations

import math

import numpy as np

from pydetect import _C
from pydetect._validation import _is_torch_tensor, check_int, check_positive, check_size

__all__ = ["roi_align", "roi_pool", "RoIAlign", "RoIPool", "MultiScaleRoIAlign", "MAX_SAMPLING_RATIO"]

#: Largest ``sampling_ratio`` (samples per bin along each axis) of :func:`roi_align`; the
#: adaptive count ``ceil(bin size)`` is clamped to it too. torchvision has no bound: its
#: adaptive count overflows for finite but huge boxes. Bins up to this many feature pixels
#: wide get torchvision's exact result; wider ones are averaged over this many samples per
#: axis (65536 per bin), which bounds time and memory. The value is the kernel's
#: (``csrc/roi/roi_math.h``).
MAX_SAMPLING_RATIO = _C.ROI_MAX_SAMPLING_RATIO


# ----------------------------------------------------------------------------- checks


def _input_dtype(input, name="input"):
    dtype = np.dtype(str(input.dtype).replace("torch.", "")) if _is_torch_tensor(input) else input.dtype
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
        a = x.detach().cpu().numpy() if _is_torch_tensor(x) else np.asarray(x)
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


# ----------------------------------------------------------------------------- autograd
def _function_classes():
    import torch
    from torch.autograd.function import once_differentiable

    class RoIAlignFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, rois, spatial_scale, ph, pw, sampling_ratio, aligned):
            x = input.detach().contiguous()
            out = _C.roi_align_forward(x.numpy(), rois, spatial_scale, ph, pw, sampling_ratio, aligned)
            ctx.args = (rois, spatial_scale, ph, pw, tuple(x.shape), sampling_ratio, aligned)
            return torch.from_numpy(out)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_output):
            rois, scale, ph, pw, (n, c, h, w), sampling_ratio, aligned = ctx.args
            g = grad_output.detach().contiguous()
            if g.dtype != torch.float32 and g.dtype != torch.float64:
                g = g.to(torch.float32)
            grad = _C.roi_align_backward(g.numpy(), rois, scale, ph, pw, n, c, h, w, sampling_ratio, aligned)
            return torch.from_numpy(grad), None, None, None, None, None, None

    class RoIPoolFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, rois, spatial_scale, ph, pw):
            x = input.detach().contiguous()
            out, argmax = _C.roi_pool_forward(x.numpy(), rois, spatial_scale, ph, pw)
            ctx.args = (rois, argmax, tuple(x.shape))
            return torch.from_numpy(out)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_output):
            rois, argmax, (n, c, h, w) = ctx.args
            g = grad_output.detach().contiguous()
            grad = _C.roi_pool_backward(g.numpy(), argmax, rois, n, c, h, w)
            return torch.from_numpy(grad), None, None, None, None

    return RoIAlignFunction, RoIPoolFunction


_FUNCTIONS = None


def _functions():
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_classes()
    return _FUNCTIONS


def _check_device(input):
    if _is_torch_tensor(input) and input.device.type != "cpu":
        raise ValueError(f"input must be a CPU tensor, got a tensor on {input.device}")


# ----------------------------------------------------------------------------- functional
def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: average of bilinear samples in each bin of each region (Mask R-CNN).

    Parameters
    ----------
    input : Tensor or array, shape (N, C, H, W), float32 or float64
        Feature maps. A tensor that requires grad receives its gradient.
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
        count as 0; samples on the border margin are clamped onto it.
    """
    _check_device(input)
    dtype = _input_dtype(input)
    ph, pw = check_size(output_size, "output_size")
    scale = check_positive(spatial_scale, "spatial_scale")
    sampling_ratio = _check_sampling_ratio(sampling_ratio)
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"aligned must be a bool, got {type(aligned).__name__}")
    rois = _rois_numpy(boxes, dtype, int(input.shape[0]))
    if not _is_torch_tensor(input):
        x = np.ascontiguousarray(input)
        return _C.roi_align_forward(x, rois, scale, ph, pw, sampling_ratio, bool(aligned))
    return _functions()[0].apply(input, rois, scale, ph, pw, sampling_ratio, bool(aligned))


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling (Fast R-CNN): the maximum of each bin of each region.

    Parameters
    ----------
    input : Tensor or array, shape (N, C, H, W), float32 or float64
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
    _check_device(input)
    dtype = _input_dtype(input)
    ph, pw = check_size(output_size, "output_size")
    scale = check_positive(spatial_scale, "spatial_scale")
    rois = _rois_numpy(boxes, dtype, int(input.shape[0]))
    if not _is_torch_tensor(input):
        return _C.roi_pool_forward(np.ascontiguousarray(input), rois, scale, ph, pw)[0]
    return _functions()[1].apply(input, rois, scale, ph, pw)


# ----------------------------------------------------------------------------- modules
def _make_modules():
    import torch
    from torch import nn

    class RoIAlign(nn.Module):
        """Module form of :func:`roi_align`."""

        def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
            super().__init__()
            self.output_size = check_size(output_size, "output_size")
            self.spatial_scale = spatial_scale
            self.sampling_ratio = sampling_ratio
            self.aligned = aligned

        def forward(self, input, rois):
            return roi_align(input, rois, self.output_size, self.spatial_scale,
                             self.sampling_ratio, self.aligned)

        def extra_repr(self):
            return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                    f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")

    class RoIPool(nn.Module):
        """Module form of :func:`roi_pool`."""

        def __init__(self, output_size, spatial_scale=1.0):
            super().__init__()
            self.output_size = check_size(output_size, "output_size")
            self.spatial_scale = spatial_scale

        def forward(self, input, rois):
            return roi_pool(input, rois, self.output_size, self.spatial_scale)

        def extra_repr(self):
            return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"

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
            self.aligned = aligned

        def _scales(self, features, image_shapes):
            max_h = max(s[0] for s in image_shapes)
            max_w = max(s[1] for s in image_shapes)
            scales = []
            for f in features:
                approx = float(f.shape[-2]) / float(max_h)
                scales.append(2.0 ** round(math.log2(approx)))
            return scales

        def levels(self, boxes, scales):
            """Index of the level each RoI of the concatenated ``boxes`` (K, 4) goes to."""
            k_min = int(round(-math.log2(scales[0])))
            k_max = int(round(-math.log2(scales[-1])))
            size = torch.sqrt(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0))
            lvl = torch.floor(self.canonical_level + torch.log2(size / self.canonical_scale + 1e-6))
            return (lvl.clamp(k_min, k_max) - k_min).to(torch.int64)

        def forward(self, features, boxes, image_shapes):
            missing = [n for n in self.featmap_names if n not in features]
            if missing:
                raise ValueError(f"features lacks the maps {missing}; it has {list(features)}")
            maps = [features[n] for n in self.featmap_names]
            if not isinstance(boxes, (list, tuple)):
                raise TypeError("boxes must be a list of Tensor[L_i, 4], one per image")
            if len(image_shapes) != len(boxes):
                raise ValueError(f"image_shapes has {len(image_shapes)} entries for {len(boxes)} images")
            scales = self._scales(maps, image_shapes)
            dtype = maps[0].dtype
            rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=dtype), b.to(dtype)], 1)
                              for i, b in enumerate(boxes)], 0) if boxes else torch.zeros(0, 5, dtype=dtype)
            if len(maps) == 1:
                return roi_align(maps[0], rois, self.output_size, scales[0], self.sampling_ratio, self.aligned)
            lvl = self.levels(rois[:, 1:], scales)
            c = maps[0].shape[1]
            out = maps[0].new_zeros((len(rois), c) + self.output_size)
            for level, (fmap, scale) in enumerate(zip(maps, scales)):
                idx = torch.nonzero(lvl == level).squeeze(1)
                if idx.numel():
                    pooled = roi_align(fmap, rois[idx], self.output_size, scale, self.sampling_ratio,
                                       self.aligned)
                    out = out.index_copy(0, idx, pooled)
            return out

    return RoIAlign, RoIPool, MultiScaleRoIAlign


def __getattr__(name):
    # The module classes subclass torch.nn.Module; they are built when first asked for so
    # that `import pydetect` does not import torch.
    if name in ("RoIAlign", "RoIPool", "MultiScaleRoIAlign"):
        classes = dict(zip(("RoIAlign", "RoIPool", "MultiScaleRoIAlign"), _make_modules()))
        for qualname, cls in classes.items():  # picklable as pydetect.ops.roi.<name>
            cls.__qualname__ = qualname
            cls.__module__ = __name__
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
