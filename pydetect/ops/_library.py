"""pydetect's operators registered with torch: the ``torch.ops.pydetect`` namespace.

``nms``, ``batched_nms``, ``box_iou``, ``roi_align`` and ``roi_pool`` (with the backward
ops ``_roi_align_backward`` and ``_roi_pool_backward``) are torch operators, so that they
work under autograd, TorchScript, torch.fx, torch.compile, torch.export and autocast like
any built-in op. This module registers, for each:

- a CPU kernel that calls pydetect's C++ (``pydetect._C``) on zero-copy numpy views of the
  tensors (a copy is made only for a non-contiguous tensor or a half-precision one);
- a CUDA kernel that calls ``pydetect._C_cuda`` on raw device pointers, registered only
  when that extension imports (a build with CUDA; see CUDA_CONTRACT in the repository);
- a fake kernel (shapes and dtypes only) for tracing;
- the gradient of ``roi_align`` and ``roi_pool`` (``torch.library.register_autograd``);
- autocast rules: under ``torch.autocast`` float16/bfloat16 inputs are computed in float32
  and RoI outputs cast back to the input's dtype, as torchvision's autocast kernels do.

Outside autocast the kernels accept float16 and bfloat16 too: they compute in float32 and
return the input's dtype. The schemas of ``nms``, ``roi_align``, ``roi_pool`` and the
backward ops are torchvision's (``roi_pool``'s argmax is int64, the index of the maximum
in its H*W plane, -1 for an empty bin). The extension itself never links against libtorch.

Checks here raise ValueError/TypeError (``torch._check_value`` / ``torch._check_type``,
which also hold on symbolic shapes while tracing); the public wrappers in
:mod:`pydetect.ops` check their arguments with friendlier messages first.
"""

from typing import Tuple

import numpy as np
import torch

from pydetect import _C

try:  # the CUDA kernels are a second extension, built only where CMake found a CUDA toolkit
    from pydetect import _C_cuda
except ImportError:
    _C_cuda = None

__all__ = ["cuda_is_available", "HAS_CUDA_KERNELS"]

#: True when pydetect was built with its CUDA kernels (``pydetect._C_cuda`` imports).
HAS_CUDA_KERNELS = _C_cuda is not None

_lib = torch.library.Library("pydetect", "DEF")
_lib.define("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor")
_lib.define("box_iou(Tensor boxes1, Tensor boxes2) -> Tensor")
_lib.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
            "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")
_lib.define("_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
            "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
            "int sampling_ratio, bool aligned) -> Tensor")
_lib.define("roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
            "SymInt pooled_width) -> (Tensor, Tensor)")
_lib.define("_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
            "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
            "SymInt height, SymInt width) -> Tensor")

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
# Largest pooled size per axis (the kernels' bound, 2^31 - 1) and samples per bin and axis.
_MAX_POOLED = 2**31 - 1
_MAX_SAMPLING_RATIO = _C.ROI_MAX_SAMPLING_RATIO


def cuda_is_available() -> bool:
    """True when pydetect's CUDA kernels are built and torch sees a GPU.

    The ops then run on CUDA tensors; without them a CUDA tensor is refused with a
    ValueError naming the argument.
    """
    return _C_cuda is not None and _C_cuda.device_count() > 0 and torch.cuda.is_available()


# ----------------------------------------------------------------------------- checks
# Shared by the real and the fake kernels, so an op fails the same way eagerly and traced.
def _require(cond, error, message) -> None:
    """Raises ``error(message())`` unless ``cond``. A symbolic condition (sizes while tracing)
    goes to torch._check_with, which decides it or records a runtime assert instead of
    guarding; a plain bool is decided here (torch._check costs ~1 us more a call)."""
    if cond is True:
        return
    if cond is False:
        raise error(message())
    torch._check_with(error, cond, message)


def _check_float(t, name: str, like=None, like_name: str = "") -> None:
    _require(t.dtype in _FLOATS, TypeError,
             lambda: f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if like is not None:
        _require(t.dtype == like.dtype, TypeError,
                 lambda: f"{name} must have the dtype of {like_name} ({like.dtype}), got {t.dtype}")


def _check_dims(t, name: str, dims: int, last=None, shape: str = "") -> None:
    """``t`` has ``dims`` dimensions (and ``last`` elements along the last one)."""
    _require(t.dim() == dims, ValueError, lambda: f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if last is not None:
        _require(t.shape[-1] == last, ValueError, lambda: f"{name} must have shape {shape}, got {tuple(t.shape)}")


def _check_length(t, name: str, n) -> None:
    _require(t.shape[0] == n, ValueError, lambda: f"{name} must have shape ({n},) to match the boxes, "
                                                  f"got {tuple(t.shape)}")


def _check_nms(boxes, scores) -> None:
    _check_float(boxes, "boxes")
    _check_float(scores, "scores", boxes, "boxes")
    _check_dims(boxes, "boxes", 2, 4, "(N, 4)")
    _check_dims(scores, "scores", 1, shape="(N,)")
    _check_length(scores, "scores", boxes.shape[0])


def _check_idxs(idxs, boxes) -> None:
    _require(idxs.dtype == torch.int64, TypeError, lambda: f"idxs must be int64, got {idxs.dtype}")
    _check_dims(idxs, "idxs", 1, shape="(N,)")
    _check_length(idxs, "idxs", boxes.shape[0])


def _check_box_iou(boxes1, boxes2) -> None:
    _check_float(boxes1, "boxes1")
    _check_float(boxes2, "boxes2", boxes1, "boxes1")
    _check_dims(boxes1, "boxes1", 2, 4, "(N, 4)")
    _check_dims(boxes2, "boxes2", 2, 4, "(M, 4)")


def _check_pooled(pooled_height, pooled_width) -> None:
    for size in (pooled_height, pooled_width):
        for cond in (size >= 1, size <= _MAX_POOLED):
            _require(cond, ValueError, lambda: f"output size must be in [1, 2^31) along each axis, got "
                                               f"({pooled_height}, {pooled_width})")


def _check_rois(rois, like, like_name: str) -> None:
    _check_float(rois, "rois", like, like_name)
    _check_dims(rois, "rois", 2, 5, "(K, 5) (batch index, x1, y1, x2, y2)")


def _check_roi_forward(input, rois, pooled_height, pooled_width) -> None:
    _check_float(input, "input")
    _check_dims(input, "input", 4, shape="(N, C, H, W)")
    _check_rois(rois, input, "input")
    _check_pooled(pooled_height, pooled_width)


def _check_sampling_ratio(sampling_ratio) -> None:
    _require(sampling_ratio <= _MAX_SAMPLING_RATIO, ValueError,
             lambda: f"sampling_ratio must be <= {_MAX_SAMPLING_RATIO}, got {sampling_ratio}")


def _check_roi_grad(grad, rois, pooled_height, pooled_width, channels) -> None:
    _check_float(grad, "grad")
    _check_rois(rois, grad, "grad")
    _check_pooled(pooled_height, pooled_width)
    _check_dims(grad, "grad", 4, shape="(K, C, PH, PW)")
    for got, want in zip(grad.shape, (rois.shape[0], channels, pooled_height, pooled_width)):
        _require(got == want, ValueError, lambda: f"grad must have shape (K, C, PH, PW) = "
                                                  f"{(rois.shape[0], channels, pooled_height, pooled_width)}, "
                                                  f"got {tuple(grad.shape)}")


def _check_argmax(argmax, grad) -> None:
    _require(argmax.dtype == torch.int64, TypeError, lambda: f"argmax must be int64, got {argmax.dtype}")
    _check_dims(argmax, "argmax", 4, shape="(K, C, PH, PW)")
    for got, want in zip(argmax.shape, grad.shape):
        _require(got == want, ValueError,
                 lambda: f"argmax must have the shape of grad {tuple(grad.shape)}, got {tuple(argmax.shape)}")


# ----------------------------------------------------------------------------- CPU kernels
def _kernel_frame(kernel):
    """``kernel`` as registered: hidden from torch.compile's frame tracer (dynamo), which would
    otherwise try to compile a kernel's Python frame when the op runs eagerly after a graph
    break, and fail on the C++ call (the traced graphs call the op, not the kernel). The
    wrapper imports dynamo lazily and costs < 1 us a call (torch's custom_op does the same)."""
    return torch._disable_dynamo(kernel)


def _np(t) -> np.ndarray:
    """A C-contiguous float32/float64 numpy view of a CPU tensor (half types: a float32 copy)."""
    t = t.detach()
    if t.dtype in _HALF:
        t = t.float()
    return t.contiguous().numpy()


def _tensor(arr: np.ndarray, dtype) -> torch.Tensor:
    """A tensor sharing ``arr``'s memory, cast to ``dtype`` (a copy only for half types)."""
    return torch.from_numpy(arr).to(dtype)


def _nms_cpu(boxes, scores, iou_threshold):
    _check_nms(boxes, scores)
    return torch.from_numpy(_C.nms(_np(boxes), _np(scores), iou_threshold))


def _batched_nms_cpu(boxes, scores, idxs, iou_threshold):
    _check_nms(boxes, scores)
    _check_idxs(idxs, boxes)
    return torch.from_numpy(_C.batched_nms(_np(boxes), _np(scores), idxs.contiguous().numpy(), iou_threshold))


def _box_iou_cpu(boxes1, boxes2):
    _check_box_iou(boxes1, boxes2)
    return _tensor(_C.box_iou(_np(boxes1), _np(boxes2)), boxes1.dtype)


def _roi_align_cpu(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    _check_sampling_ratio(sampling_ratio)
    out = _C.roi_align_forward(_np(input), _np(rois), spatial_scale, pooled_height, pooled_width,
                               sampling_ratio, aligned)
    return _tensor(out, input.dtype)


def _roi_align_backward_cpu(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                            height, width, sampling_ratio, aligned):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_sampling_ratio(sampling_ratio)
    out = _C.roi_align_backward(_np(grad), _np(rois), spatial_scale, pooled_height, pooled_width, batch_size,
                                channels, height, width, sampling_ratio, aligned)
    return _tensor(out, grad.dtype)


def _roi_pool_cpu(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    out, argmax = _C.roi_pool_forward(_np(input), _np(rois), spatial_scale, pooled_height, pooled_width)
    return _tensor(out, input.dtype), torch.from_numpy(argmax)


def _roi_pool_backward_cpu(grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size,
                           channels, height, width):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_argmax(argmax, grad)
    out = _C.roi_pool_backward(_np(grad), argmax.contiguous().numpy(), _np(rois), batch_size, channels,
                               height, width)
    return _tensor(out, grad.dtype)


for _name, _kernel in (("nms", _nms_cpu), ("batched_nms", _batched_nms_cpu), ("box_iou", _box_iou_cpu),
                       ("roi_align", _roi_align_cpu), ("_roi_align_backward", _roi_align_backward_cpu),
                       ("roi_pool", _roi_pool_cpu), ("_roi_pool_backward", _roi_pool_backward_cpu)):
    _lib.impl(_name, _kernel_frame(_kernel), "CPU")


# ----------------------------------------------------------------------------- CUDA kernels
# pydetect._C_cuda takes raw device pointers, sizes, the element type (its FloatType enum) and
# the current stream; it sets the device itself, the guard below restores torch's.
def _cuda(t):
    """``t`` as a C-contiguous float32/float64 CUDA tensor (half types computed in float32)."""
    t = t.detach()
    return (t.float() if t.dtype in _HALF else t).contiguous()


def _same_device(*named) -> None:
    """The kernels read every tensor through a device pointer: all must be on one GPU."""
    (first, first_name), *rest = named
    for t, name in rest:
        _require(t.device == first.device, ValueError,
                 lambda: f"{name} is on {t.device} but {first_name} is on {first.device}")


def _launch(fn, like, *args):
    with torch.cuda.device(like.device):
        stream = torch.cuda.current_stream(like.device).cuda_stream
        fn(like.device.index, *args, stream)


def _float_type(t):
    """The kernels' element type of a float32 / float64 tensor (``_C_cuda.FloatType``)."""
    return _C_cuda.FloatType.FLOAT32 if t.dtype == torch.float32 else _C_cuda.FloatType.FLOAT64


def _check_batch_indices_cuda(rois, batch_size) -> None:
    # The kernels index the input with rois[:, 0]: an index out of range would read outside
    # the feature map, so it is checked here (one synchronisation) as the CPU kernel does.
    idx = rois[:, 0]
    bad = ((idx < 0) | (idx >= batch_size) | (idx != idx.floor())).any()
    if bad.item():
        raise ValueError(f"rois[:, 0] must be image indices in [0, {batch_size})")


def _nms_cuda(boxes, scores, iou_threshold):
    _check_nms(boxes, scores)
    _same_device((boxes, "boxes"), (scores, "scores"))
    n = boxes.shape[0]
    # Equal scores: lower index first, as on the CPU (a stable sort).
    order = torch.sort(_cuda(scores), descending=True, stable=True).indices
    if n == 0:
        return order
    sorted_boxes = _cuda(boxes).index_select(0, order).contiguous()
    mask = torch.empty((n, (n + 63) // 64), dtype=torch.int64, device=boxes.device)
    _launch(_C_cuda.nms_mask, boxes, sorted_boxes.data_ptr(), n, float(iou_threshold), mask.data_ptr(),
            _float_type(sorted_boxes))
    keep = _C.nms_reduce_mask(mask.cpu().numpy().view(np.uint64))
    return order[torch.from_numpy(keep).to(boxes.device)]


def _batched_nms_cuda(boxes, scores, idxs, iou_threshold):
    # The CUDA contract has no per-label kernel: pydetect's exact per-label NMS runs on a host
    # copy (N x 6 numbers, small next to the IoU work it saves on the GPU's round trip).
    keep = _batched_nms_cpu(boxes.cpu(), scores.cpu(), idxs.cpu(), iou_threshold)
    return keep.to(boxes.device)


def _box_iou_cuda(boxes1, boxes2):
    _check_box_iou(boxes1, boxes2)
    _same_device((boxes1, "boxes1"), (boxes2, "boxes2"))
    a, b = _cuda(boxes1), _cuda(boxes2)
    out = torch.empty((a.shape[0], b.shape[0]), dtype=a.dtype, device=a.device)
    if out.numel():
        _launch(_C_cuda.box_iou, a, a.data_ptr(), a.shape[0], b.data_ptr(), b.shape[0], out.data_ptr(),
                _float_type(a))
    return out.to(boxes1.dtype)


def _roi_align_cuda(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    _check_sampling_ratio(sampling_ratio)
    _same_device((input, "input"), (rois, "rois"))
    x, r = _cuda(input), _cuda(rois)
    n, c, h, w = x.shape
    _check_batch_indices_cuda(r, n)
    out = torch.empty((r.shape[0], c, pooled_height, pooled_width), dtype=x.dtype, device=x.device)
    if out.numel():
        _launch(_C_cuda.roi_align_forward, x, x.data_ptr(), r.data_ptr(), out.data_ptr(), _float_type(x),
                n, c, h, w, r.shape[0], pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned)
    return out.to(input.dtype)


def _roi_align_backward_cuda(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                             height, width, sampling_ratio, aligned):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_sampling_ratio(sampling_ratio)
    _same_device((grad, "grad"), (rois, "rois"))
    g, r = _cuda(grad), _cuda(rois)
    _check_batch_indices_cuda(r, batch_size)
    out = torch.zeros((batch_size, channels, height, width), dtype=g.dtype, device=g.device)
    if g.numel() and out.numel():
        _launch(_C_cuda.roi_align_backward, g, g.data_ptr(), r.data_ptr(), out.data_ptr(), _float_type(g),
                batch_size, channels, height, width, r.shape[0], pooled_height, pooled_width, spatial_scale,
                sampling_ratio, aligned)
    return out.to(grad.dtype)


def _roi_pool_cuda(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    _same_device((input, "input"), (rois, "rois"))
    x, r = _cuda(input), _cuda(rois)
    n, c, h, w = x.shape
    _check_batch_indices_cuda(r, n)
    shape = (r.shape[0], c, pooled_height, pooled_width)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    argmax = torch.empty(shape, dtype=torch.int64, device=x.device)
    if out.numel():
        _launch(_C_cuda.roi_pool_forward, x, x.data_ptr(), r.data_ptr(), out.data_ptr(), argmax.data_ptr(),
                _float_type(x), n, c, h, w, r.shape[0], pooled_height, pooled_width, spatial_scale)
    return out.to(input.dtype), argmax


def _roi_pool_backward_cuda(grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size,
                            channels, height, width):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_argmax(argmax, grad)
    _same_device((grad, "grad"), (rois, "rois"), (argmax, "argmax"))
    g, r, a = _cuda(grad), _cuda(rois), argmax.contiguous()
    _check_batch_indices_cuda(r, batch_size)
    # argmax indexes the H*W plane: out of range, it would write outside the gradient.
    bad = ((a < -1) | (a >= height * width)).any()
    if bad.item():
        raise ValueError(f"argmax must hold indices in [-1, {height * width})")
    out = torch.zeros((batch_size, channels, height, width), dtype=g.dtype, device=g.device)
    if g.numel() and out.numel():
        _launch(_C_cuda.roi_pool_backward, g, g.data_ptr(), a.data_ptr(), r.data_ptr(), out.data_ptr(),
                _float_type(g), batch_size, channels, height, width, r.shape[0], pooled_height, pooled_width)
    return out.to(grad.dtype)


if _C_cuda is not None:
    for _name, _kernel in (("nms", _nms_cuda), ("batched_nms", _batched_nms_cuda), ("box_iou", _box_iou_cuda),
                           ("roi_align", _roi_align_cuda), ("_roi_align_backward", _roi_align_backward_cuda),
                           ("roi_pool", _roi_pool_cuda), ("_roi_pool_backward", _roi_pool_backward_cuda)):
        _lib.impl(_name, _kernel_frame(_kernel), "CUDA")


# ----------------------------------------------------------------------------- fake kernels
@torch.library.register_fake("pydetect::nms", lib=_lib)
def _nms_fake(boxes, scores, iou_threshold):
    _check_nms(boxes, scores)
    return boxes.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=torch.int64)


@torch.library.register_fake("pydetect::batched_nms", lib=_lib)
def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
    _check_nms(boxes, scores)
    _check_idxs(idxs, boxes)
    return boxes.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=torch.int64)


@torch.library.register_fake("pydetect::box_iou", lib=_lib)
def _box_iou_fake(boxes1, boxes2):
    _check_box_iou(boxes1, boxes2)
    return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]))


@torch.library.register_fake("pydetect::roi_align", lib=_lib)
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    _check_sampling_ratio(sampling_ratio)
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.register_fake("pydetect::_roi_align_backward", lib=_lib)
def _roi_align_backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                             height, width, sampling_ratio, aligned):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_sampling_ratio(sampling_ratio)
    return grad.new_empty((batch_size, channels, height, width))


@torch.library.register_fake("pydetect::roi_pool", lib=_lib)
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_roi_forward(input, rois, pooled_height, pooled_width)
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


@torch.library.register_fake("pydetect::_roi_pool_backward", lib=_lib)
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size,
                            channels, height, width):
    _check_roi_grad(grad, rois, pooled_height, pooled_width, channels)
    _check_argmax(argmax, grad)
    return grad.new_empty((batch_size, channels, height, width))


# ----------------------------------------------------------------------------- autograd
# The gradient of the input only (torchvision's too): none for the boxes, whose effect on
# the sample positions is not differentiated. The backward ops are not differentiable.
def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width, *input.shape, sampling_ratio, aligned)


def _roi_align_grad(ctx, grad):
    (rois,) = ctx.saved_tensors
    grad_input = torch.ops.pydetect._roi_align_backward(grad, rois, *ctx.args)
    return grad_input, None, None, None, None, None, None


def _roi_pool_setup(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width = inputs
    ctx.save_for_backward(rois, output[1])
    ctx.args = (spatial_scale, pooled_height, pooled_width, *input.shape)
    # Otherwise autograd fills an int64 zero "gradient" of argmax (as large as the output)
    # before every backward: it doubled the backward's time at detector sizes.
    ctx.set_materialize_grads(False)


def _roi_pool_grad(ctx, grad, grad_argmax):
    if grad is None:  # an undefined output gradient (autograd may pass one): none for the input
        return None, None, None, None, None
    rois, argmax = ctx.saved_tensors
    grad_input = torch.ops.pydetect._roi_pool_backward(grad, rois, argmax, *ctx.args)
    return grad_input, None, None, None, None


torch.library.register_autograd("pydetect::roi_align", _roi_align_grad, setup_context=_roi_align_setup, lib=_lib)
torch.library.register_autograd("pydetect::roi_pool", _roi_pool_grad, setup_context=_roi_pool_setup, lib=_lib)


# ----------------------------------------------------------------------------- autocast
# torchvision's rule (csrc/ops/autocast/roi_align_kernel.cpp): with autocast off inside,
# float16/bfloat16 tensors go to float32 (float64 stays), and RoI outputs come back in the
# input's dtype. NMS returns indices, so nothing is cast back.
def _f32(t):
    return t.float() if t.dtype in _HALF else t


def _register_autocast(key_name: str) -> None:
    key = getattr(torch._C.DispatchKey, key_name)

    def no_autocast():
        return torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key))

    def nms(boxes, scores, iou_threshold):
        with no_autocast():
            return torch.ops.pydetect.nms(_f32(boxes), _f32(scores), iou_threshold)

    def batched_nms(boxes, scores, idxs, iou_threshold):
        with no_autocast():
            return torch.ops.pydetect.batched_nms(_f32(boxes), _f32(scores), idxs, iou_threshold)

    def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
        with no_autocast():
            out = torch.ops.pydetect.roi_align(_f32(input), _f32(rois), spatial_scale, pooled_height,
                                               pooled_width, sampling_ratio, aligned)
        return out.to(input.dtype)

    def roi_pool(input, rois, spatial_scale, pooled_height, pooled_width):
        with no_autocast():
            out, argmax = torch.ops.pydetect.roi_pool(_f32(input), _f32(rois), spatial_scale, pooled_height,
                                                      pooled_width)
        return out.to(input.dtype), argmax

    for name, kernel in (("nms", nms), ("batched_nms", batched_nms), ("roi_align", roi_align),
                         ("roi_pool", roi_pool)):
        _lib.impl(name, _kernel_frame(kernel), key_name)


_register_autocast("AutocastCPU")
_register_autocast("AutocastCUDA")


# ----------------------------------------------------------------------------- wrappers' helpers
# The public functions (pydetect.ops) check their arguments eagerly, on host views of the
# tensors with the same checks as numpy arrays, then call the ops. The checks read tensor
# values, so they are skipped while torch.jit.trace or torch.compile records the call
# (a check would be baked into the trace or break the graph); TorchScript skips them too.
def eager() -> bool:
    """True unless torch.jit.trace or torch.compile is tracing the caller."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


def host(x):
    """What the numpy-based checks read: a tensor detached, on the CPU (zero-copy for a CPU
    tensor), bfloat16 (which numpy lacks) as float32; anything else as it is."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach().cpu()
    return x.float() if x.dtype == torch.bfloat16 else x


def as_tensor(x) -> torch.Tensor:
    """A tensor as it is; an array or sequence (already checked) as a tensor."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))


def check_device(t, name: str) -> None:
    """A tensor on a device the ops have kernels for."""
    if t.device.type == "cpu" or (t.device.type == "cuda" and HAS_CUDA_KERNELS):
        return
    where = "the CPU and CUDA" if HAS_CUDA_KERNELS else "the CPU (this build has no CUDA kernels)"
    raise ValueError(f"{name} is on {t.device}, but pydetect's ops run on {where}")


def compute_pair(a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` in their common float dtype on ``a``'s device: float32 or float64,
    integers and half types computing in float32 (as for numpy arrays)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    if dtype != torch.float32 and dtype != torch.float64:
        dtype = torch.float32
    return a.to(dtype), b.to(device=a.device, dtype=dtype)
