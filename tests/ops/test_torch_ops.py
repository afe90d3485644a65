"""pydetect's ops as torch operators: registration, opcheck, autograd, autocast, TorchScript,
torch.fx, torch.compile / torch.export, module reprs (pydetect/ops/_library.py).

References: the numpy path (arrays go straight to pydetect._C, the kernels every other test
checks against brute force), torch's own opcheck / gradcheck, and float32 results for the
half-precision cases. CUDA kernels are tested on a GPU by the CUDA tests; here only that
pydetect imports and stays CPU-only without them.
"""

import ctypes
import enum
import io

import numpy as np
import pytest
import torch
from torch import nn

import _reference as ref
import pydetect
from _isolated import run_isolated
from pydetect import _C, ops

PD = torch.ops.pydetect
OPS = ("nms", "batched_nms", "box_iou", "roi_align", "_roi_align_backward", "roi_pool", "_roi_pool_backward")
DTYPES = [torch.float32, torch.float64]


def boxes_and_scores(n=60, dtype=torch.float32, seed=0):
    b, s = ref.clustered_boxes(np.random.default_rng(seed), n, np.float64, image=100.0)
    return torch.tensor(b, dtype=dtype), torch.tensor(s, dtype=dtype)


def roi_case(dtype=torch.float64, seed=0, n=2, c=3, h=11, w=13, k=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    xy = torch.rand(k, 2, generator=g, dtype=dtype) * torch.tensor([2.0 * w, 2.0 * h], dtype=dtype) - 2
    wh = 1 + torch.rand(k, 2, generator=g, dtype=dtype) * 12
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).to(dtype), xy, xy + wh], 1)
    return x, rois


def op_cases(dtype):
    """(name, op, args) for torch.library.opcheck, one per op."""
    b, s = boxes_and_scores(dtype=dtype)
    labels = torch.arange(len(b)) % 3
    x, rois = roi_case(dtype)
    x.requires_grad_(True)
    k, c = rois.shape[0], x.shape[1]
    grad = torch.randn(k, c, 3, 2, dtype=dtype)
    _, argmax = PD.roi_pool(x.detach(), rois, 0.5, 3, 2)
    return [
        ("nms", PD.nms, (b, s, 0.5)),
        ("batched_nms", PD.batched_nms, (b, s, labels, 0.5)),
        ("box_iou", PD.box_iou, (b, b[:7])),
        ("roi_align", PD.roi_align, (x, rois, 0.5, 3, 2, 2, True)),
        ("roi_align", PD.roi_align, (x, rois, 0.5, 3, 2, -1, False)),
        ("_roi_align_backward", PD._roi_align_backward, (grad, rois, 0.5, 3, 2, 2, c, 11, 13, 2, True)),
        ("roi_pool", PD.roi_pool, (x, rois, 0.5, 3, 2)),
        ("_roi_pool_backward", PD._roi_pool_backward, (grad, rois, argmax, 0.5, 3, 2, 2, c, 11, 13)),
    ]


# ----------------------------------------------------------------------------- registration
def test_ops_are_registered_with_cpu_autograd_and_autocast_kernels():
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    for name in OPS:
        assert hasattr(PD, name)
        assert has(f"pydetect::{name}", "CPU")
        assert has(f"pydetect::{name}", "Meta")  # the fake kernel
    for name in ("roi_align", "roi_pool"):
        assert has(f"pydetect::{name}", "Autograd")
    for name in ("nms", "batched_nms", "roi_align", "roi_pool"):
        assert has(f"pydetect::{name}", "AutocastCPU") and has(f"pydetect::{name}", "AutocastCUDA")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_opcheck(dtype):
    for name, op, args in op_cases(dtype):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (name, result)


def test_opcheck_under_autocast():
    # bfloat16 inputs under CPU autocast: computed in float32 by the autocast rule.
    for name, op, args in op_cases(torch.float32):
        if name.startswith("_"):
            continue  # torchvision has no autocast rule for the backward ops either
        args = tuple(a.detach().bfloat16().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
                     and a.is_floating_point() else a for a in args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (name, result)


def test_op_level_checks_raise_value_and_type_errors():
    x, rois = roi_case(torch.float32)
    with pytest.raises(TypeError, match="rois must have the dtype of input"):
        PD.roi_align(x, rois.double(), 1.0, 2, 2, 0, False)
    with pytest.raises(ValueError, match=r"rois must have shape \(K, 5\)"):
        PD.roi_pool(x, rois[:, :4], 1.0, 2, 2)
    with pytest.raises(ValueError, match="output size"):
        PD.roi_align(x, rois, 1.0, 0, 2, 0, False)
    with pytest.raises(ValueError, match="sampling_ratio"):
        PD.roi_align(x, rois, 1.0, 2, 2, 257, False)
    bad = rois.clone()
    bad[0, 0] = 5
    with pytest.raises(ValueError, match="image index"):  # checked by the C++ kernel
        PD.roi_align(x, bad, 1.0, 2, 2, 0, False)
    b, s = boxes_and_scores()
    with pytest.raises(ValueError, match=r"scores must have shape \(60,\)"):
        PD.nms(b, s[:5], 0.5)
    with pytest.raises(TypeError, match="idxs must be int64"):
        PD.batched_nms(b, s, torch.zeros(60, dtype=torch.int32), 0.5)
    with pytest.raises(TypeError, match="boxes must be float16"):
        PD.nms(b.long(), s, 0.5)


# ----------------------------------------------------------------------------- numpy path parity
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tensor_results_equal_the_numpy_path_bit_for_bit(dtype):
    b, s = boxes_and_scores(200, dtype)
    labels = torch.arange(200) % 4
    np.testing.assert_array_equal(ops.nms(b, s, 0.5).numpy(), ops.nms(b.numpy(), s.numpy(), 0.5))
    np.testing.assert_array_equal(ops.nms(b, s, 0.5).numpy(), ref.nms(b.numpy(), s.numpy(), 0.5))
    np.testing.assert_array_equal(ops.batched_nms(b, s, labels, 0.5).numpy(),
                                  ops.batched_nms(b.numpy(), s.numpy(), labels.numpy(), 0.5))
    np.testing.assert_array_equal(ops.box_iou(b, b[:30]).numpy(), ops.box_iou(b.numpy(), b[:30].numpy()))
    x, rois = roi_case(dtype)
    for aligned in (False, True):
        np.testing.assert_array_equal(ops.roi_align(x, rois, (3, 2), 0.5, -1, aligned).numpy(),
                                      ops.roi_align(x.numpy(), rois.numpy(), (3, 2), 0.5, -1, aligned))
    np.testing.assert_array_equal(ops.roi_pool(x, rois, 3, 0.5).numpy(), ops.roi_pool(x.numpy(), rois.numpy(), 3, 0.5))
    # The backward op against the kernel's backward on the same arrays.
    grad = torch.randn(len(rois), 3, 3, 2, dtype=dtype)
    np.testing.assert_array_equal(PD._roi_align_backward(grad, rois, 0.5, 3, 2, 2, 3, 11, 13, 2, True).numpy(),
                                  _C.roi_align_backward(grad.numpy(), rois.numpy(), 0.5, 3, 2, 2, 3, 11, 13, 2, True))


def test_batched_nms_accepts_empty_boxes_with_none_as_torchvision():
    empty = ops.batched_nms(torch.empty((0,)), None, None, None)
    assert isinstance(empty, torch.Tensor) and empty.dtype == torch.int64 and empty.shape == (0,)
    empty = ops.batched_nms(np.zeros((0, 4)), None, None, None)
    assert isinstance(empty, np.ndarray) and empty.dtype == np.int64 and empty.shape == (0,)
    with pytest.raises(TypeError, match="iou_threshold"):  # non-empty boxes still need the rest
        ops.batched_nms(torch.zeros(1, 4), torch.ones(1), torch.zeros(1, dtype=torch.int64), None)


def test_cpu_only_build_imports_and_refuses_other_devices():
    if pydetect.ops._library.HAS_CUDA_KERNELS:
        pytest.skip("this build has CUDA kernels")
    assert pydetect.cuda_is_available() is False
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("pydetect::roi_align", "CUDA")
    with pytest.raises(ValueError, match="boxes is on meta"):
        ops.nms(torch.zeros(3, 4, device="meta"), torch.zeros(3, device="meta"), 0.5)
    x, rois = roi_case()
    with pytest.raises(ValueError, match="input is on meta"):
        ops.roi_align(x.to("meta"), rois, 2)


def test_import_without_the_cuda_extension():
    # As on a machine where pydetect._C_cuda was not built (or cannot load its CUDA runtime).
    run_isolated("""
        import sys
        sys.modules["pydetect._C_cuda"] = None  # makes `from pydetect import _C_cuda` raise ImportError
        import torch, pydetect
        from pydetect import ops
        assert pydetect.cuda_is_available() is False
        assert not pydetect.ops._library.HAS_CUDA_KERNELS
        assert not torch._C._dispatch_has_kernel_for_dispatch_key("pydetect::nms", "CUDA")
        keep = ops.nms(torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1.1]]), torch.tensor([0.5, 0.9]), 0.5)
        assert keep.tolist() == [1]
    """)


class HostCudaContract:
    """pydetect._C_cuda's contract (the header of csrc/bindings/module_cuda.cpp) run on host
    memory: each call wraps the raw pointers it gets as numpy arrays and computes with the CPU
    kernels, so that the CUDA kernels' Python side (argument order, sizes, element types,
    zero-filled gradients, the sorted boxes and bit mask of NMS) is checked on a machine
    without a GPU."""

    FloatType = enum.Enum("FloatType", "FLOAT32 FLOAT64")

    def numpy_type(self, float_type):
        assert isinstance(float_type, self.FloatType), f"the element type must be a FloatType, got {float_type!r}"
        return np.float32 if float_type is self.FloatType.FLOAT32 else np.float64

    @staticmethod
    def array(ptr, shape, dtype):
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer((ctypes.c_char * count).from_address(ptr), dtype).reshape(shape)

    def box_iou(self, device, a, n, b, m, out, code, stream):
        t = self.numpy_type(code)
        self.array(out, (n, m), t)[:] = _C.box_iou(self.array(a, (n, 4), t), self.array(b, (m, 4), t))

    def nms_mask(self, device, boxes, n, iou_threshold, mask, code, stream):
        b = self.array(boxes, (n, 4), self.numpy_type(code))
        over = np.triu(ref.box_iou(b, b) > iou_threshold, 1)  # j > i
        words = np.zeros((n, (n + 63) // 64 * 64), bool)
        words[:, :n] = over
        bits = np.packbits(words.reshape(n, -1, 64), axis=2, bitorder="little")
        self.array(mask, (n, (n + 63) // 64), np.uint64)[:] = bits.view(np.uint64).reshape(n, -1)

    @staticmethod
    def nms_reduce_mask(mask):
        n = mask.shape[0]
        bits = np.unpackbits(mask.view(np.uint8).reshape(n, -1), axis=1, bitorder="little")[:, :n].astype(bool)
        removed, keep = np.zeros(n, bool), []
        for i in range(n):
            if not removed[i]:
                keep.append(i)
                removed |= bits[i]
        return np.array(keep, np.int64)

    def roi_align_forward(self, device, x, rois, out, code, n, c, h, w, r, ph, pw, scale, sr, aligned, stream):
        t = self.numpy_type(code)
        self.array(out, (r, c, ph, pw), t)[:] = _C.roi_align_forward(
            self.array(x, (n, c, h, w), t), self.array(rois, (r, 5), t), scale, ph, pw, sr, aligned)

    def roi_align_backward(self, device, g, rois, out, code, n, c, h, w, r, ph, pw, scale, sr, aligned, stream):
        t = self.numpy_type(code)
        self.array(out, (n, c, h, w), t)[:] += _C.roi_align_backward(  # atomic adds into zeros
            self.array(g, (r, c, ph, pw), t), self.array(rois, (r, 5), t), scale, ph, pw, n, c, h, w, sr, aligned)

    def roi_pool_forward(self, device, x, rois, out, argmax, code, n, c, h, w, r, ph, pw, scale, stream):
        t = self.numpy_type(code)
        o, a = _C.roi_pool_forward(self.array(x, (n, c, h, w), t), self.array(rois, (r, 5), t), scale, ph, pw)
        self.array(out, (r, c, ph, pw), t)[:] = o
        self.array(argmax, (r, c, ph, pw), np.int64)[:] = a

    def roi_pool_backward(self, device, g, argmax, rois, out, code, n, c, h, w, r, ph, pw, stream):
        t = self.numpy_type(code)
        self.array(out, (n, c, h, w), t)[:] += _C.roi_pool_backward(
            self.array(g, (r, c, ph, pw), t), self.array(argmax, (r, c, ph, pw), np.int64),
            self.array(rois, (r, 5), t), n, c, h, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_kernels_follow_the_contract(monkeypatch, dtype):
    lib = pydetect.ops._library
    fake = HostCudaContract()
    monkeypatch.setattr(lib, "_C_cuda", fake)
    monkeypatch.setattr(lib, "_launch", lambda fn, like, *args: fn(0, *args, 0))
    monkeypatch.setattr(lib._C, "nms_reduce_mask", fake.nms_reduce_mask, raising=False)
    b, s = boxes_and_scores(150, dtype)
    s[::7] = s[0]  # ties: lower index first
    assert torch.equal(lib._nms_cuda(b, s, 0.5), PD.nms(b, s, 0.5))
    assert torch.equal(lib._nms_cuda(b[:0], s[:0], 0.5), PD.nms(b[:0], s[:0], 0.5))
    assert torch.equal(lib._box_iou_cuda(b, b[:9]), PD.box_iou(b, b[:9]))
    x, rois = roi_case(dtype)
    args = (rois, 0.5, 3, 2)
    assert torch.equal(lib._roi_align_cuda(x, *args, 2, True), PD.roi_align(x, *args, 2, True))
    out, argmax = lib._roi_pool_cuda(x, *args)
    want, want_argmax = PD.roi_pool(x, *args)
    assert torch.equal(out, want) and torch.equal(argmax, want_argmax)
    grad = torch.randn(len(rois), 3, 3, 2, dtype=dtype)
    sizes = (2, 3, 11, 13)
    assert torch.equal(lib._roi_align_backward_cuda(grad, *args, *sizes, 2, True),
                       PD._roi_align_backward(grad, *args, *sizes, 2, True))
    assert torch.equal(lib._roi_pool_backward_cuda(grad, rois, argmax, 0.5, 3, 2, *sizes),
                       PD._roi_pool_backward(grad, rois, argmax, 0.5, 3, 2, *sizes))
    bad = rois.clone()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="image indices"):
        lib._roi_align_cuda(x, bad, 0.5, 3, 2, 2, True)


# ----------------------------------------------------------------------------- autograd
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradcheck_through_the_registered_ops(aligned, sampling_ratio):
    x, rois = roi_case(torch.float64, k=5)
    x.requires_grad_(True)
    torch.autograd.gradcheck(lambda t: PD.roi_align(t, rois, 0.5, 3, 2, sampling_ratio, aligned), (x,))
    torch.autograd.gradcheck(lambda t: PD.roi_pool(t, rois, 0.5, 3, 2)[0], (x,))


# ----------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=str)
def test_half_inputs_compute_in_float32_and_keep_their_dtype(half):
    x, rois = roi_case(torch.float32)
    xh, rh = x.to(half), rois.to(half)
    for fn in (ops.roi_align, ops.roi_pool):
        out = fn(xh, rh, (3, 2), 0.5)
        assert out.dtype == half
        expected = fn(xh.float(), rh.float(), (3, 2), 0.5)  # the same rounded inputs, in float32
        torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
        xg = xh.clone().requires_grad_(True)
        fn(xg, rh, (3, 2), 0.5).sum().backward()
        assert xg.grad.dtype == half
    b, s = boxes_and_scores()
    bh, sh = b.to(half), s.to(half)
    assert ops.nms(bh, sh, 0.5).tolist() == ops.nms(bh.float(), sh.float(), 0.5).tolist()


def test_bfloat16_under_cpu_autocast():
    x, rois = roi_case(torch.float32)
    xb = x.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.roi_align(xb, rois, (3, 2), 0.5, 2, True)  # rois float32: cast to input's dtype
        # The raw op with mixed dtypes: the autocast rule computes both in float32.
        raw = PD.roi_align(xb, rois, 0.5, 3, 2, 2, True)
        pooled = ops.roi_pool(xb, rois, 3, 0.5)
        keep = PD.nms(*[t.bfloat16() for t in boxes_and_scores()], 0.5)
    assert out.dtype == raw.dtype == pooled.dtype == torch.bfloat16
    expected = ops.roi_align(xb.detach().float(), rois, (3, 2), 0.5, 2, True)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(raw.float(), expected, rtol=1e-2, atol=1e-2)
    b, s = boxes_and_scores()
    assert keep.tolist() == ops.nms(b.bfloat16().float(), s.bfloat16().float(), 0.5).tolist()
    out.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and xb.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- TorchScript
class PoolBoxes(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        return self.pool(x, boxes)


def test_script_functions_equal_eager():
    b, s = boxes_and_scores(100)
    labels = torch.arange(100) % 3
    x, rois = roi_case(torch.float32)
    as_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    calls = [
        (ops.nms, (b, s, 0.5)),
        (ops.batched_nms, (b, s, labels, 0.5)),
        (ops.box_iou, (b, b[:10])),
        (ops.roi_align, (x, rois, [3, 2], 0.5, 2, True)),
        (ops.roi_align, (x, as_list, [3, 3])),
        (ops.roi_pool, (x, rois, [3, 2], 0.5)),
        (ops.roi_pool, (x, as_list, [2, 2], 0.5)),
    ]
    for fn, args in calls:
        torch.testing.assert_close(torch.jit.script(fn)(*args), fn(*args), rtol=0, atol=0)


def test_script_modules_equal_eager_and_survive_save_load():
    x, rois = roi_case(torch.float32)
    as_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    feats = {"a": x, "b": x[:, :, ::2, ::2].contiguous()}
    modules = [
        (ops.RoIAlign((3, 2), 0.5, 2, True), (x, rois)),
        (ops.RoIPool(3, 0.5), (x, rois)),
        (PoolBoxes(ops.RoIAlign(3, 1.0, -1)), (x, as_list)),
        (ops.MultiScaleRoIAlign(["a", "b"], 3, 2, canonical_scale=8, canonical_level=3),
         (feats, as_list, [(22, 26)] * 2)),
    ]
    for module, args in modules:
        scripted = torch.jit.script(module)
        torch.testing.assert_close(scripted(*args), module(*args), rtol=0, atol=0)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.jit.load(buffer)(*args), module(*args), rtol=0, atol=0)


# ----------------------------------------------------------------------------- box_convert, box_area
FORMATS = ("xyxy", "xywh", "cxcywh")
FORMAT_PAIRS = [(a, b) for a in FORMATS for b in FORMATS if a != b]


def format_boxes(n, dtype, seed=0):
    """(n, 4) boxes read as any format: corners or centres in [0, 100), sides in [0, 40)
    (some 0), values that round in float32."""
    rng = np.random.default_rng(seed)
    xy, wh = rng.uniform(0, 100, (n, 2)), rng.uniform(0, 40, (n, 2))
    wh[rng.random(n) < 0.1] = 0
    return torch.tensor(np.concatenate([xy, wh], 1), dtype=dtype)


def numpy_box_convert(b, in_fmt, out_fmt):
    """By hand, in the C++ kernels' operation order (csrc/boxes/box_ops.cpp): through xyxy,
    in the boxes' own dtype."""
    t = b.dtype.type
    p, q, r, s = b.T
    if in_fmt == "xyxy":
        x1, y1, x2, y2 = p, q, r, s
    elif in_fmt == "xywh":
        x1, y1, x2, y2 = p, q, p + r, q + s
    else:  # cxcywh
        x1, y1, x2, y2 = p - t(0.5) * r, q - t(0.5) * s, p + t(0.5) * r, q + t(0.5) * s
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:  # cxcywh
        out = ((x1 + x2) / t(2), (y1 + y2) / t(2), x2 - x1, y2 - y1)
    return np.stack(out, 1)


def numpy_box_area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_script_box_convert_and_box_area_equal_eager_and_numpy(dtype):
    convert, area = torch.jit.script(ops.box_convert), torch.jit.script(ops.box_area)
    for n in (60, 0):
        b = format_boxes(n, dtype)
        for in_fmt, out_fmt in FORMAT_PAIRS + [(f, f) for f in FORMATS]:
            got = convert(b, in_fmt, out_fmt)
            want = numpy_box_convert(b.numpy(), in_fmt, out_fmt)
            assert got.dtype == dtype and got.shape == (n, 4)
            torch.testing.assert_close(got, ops.box_convert(b, in_fmt, out_fmt), rtol=0, atol=0)
            np.testing.assert_array_equal(got.numpy(), want)
            np.testing.assert_array_equal(ops.box_convert(b.numpy(), in_fmt, out_fmt), want)
        got = area(b)
        assert got.dtype == dtype and got.shape == (n,)
        torch.testing.assert_close(got, ops.box_area(b), rtol=0, atol=0)
        np.testing.assert_array_equal(got.numpy(), numpy_box_area(b.numpy()))
    assert convert(b, "xyxy", "xyxy") is not b  # a new tensor, as eagerly


def test_script_box_convert_and_box_area_keep_the_eager_rules():
    convert, area = torch.jit.script(ops.box_convert), torch.jit.script(ops.box_area)
    ints = torch.tensor([[1, 2, 4, 8]])
    for fn, args in ((ops.box_convert, (ints, "xywh", "cxcywh")), (ops.box_area, (ints,))):
        scripted = torch.jit.script(fn)(*args)
        assert scripted.dtype == torch.float32  # integers compute in float32
        torch.testing.assert_close(scripted, fn(*args), rtol=0, atol=0)
    for empty in (torch.zeros(0), torch.zeros(0, 0, dtype=torch.float64)):  # as (0, 4)
        assert convert(empty, "xywh", "xyxy").shape == ops.box_convert(empty, "xywh", "xyxy").shape == (0, 4)
        assert area(empty).dtype == ops.box_area(empty).dtype == empty.dtype
    b = format_boxes(3, torch.float32)
    for fn in (convert, ops.box_convert):  # TorchScript raises its own error class, with the message
        with pytest.raises((ValueError, torch.jit.Error), match="in_fmt must be one of 'xyxy', 'xywh', 'cxcywh'"):
            fn(b, "xyzw", "xyxy")
        with pytest.raises((ValueError, torch.jit.Error), match="out_fmt must be one of"):
            fn(b, "xyxy", "XYXY")
    for fn in (area, ops.box_area):
        with pytest.raises((ValueError, torch.jit.Error), match=r"boxes must have shape \(N, 4\), got \(3, 5\)"):
            fn(torch.zeros(3, 5))
        with pytest.raises((ValueError, torch.jit.Error), match=r"got \(4,\)"):
            fn(torch.zeros(4))


def test_scripted_box_convert_and_box_area_are_differentiable():
    b = format_boxes(6, torch.float64).requires_grad_(True)
    convert, area = torch.jit.script(ops.box_convert), torch.jit.script(ops.box_area)
    for in_fmt, out_fmt in FORMAT_PAIRS:
        torch.autograd.gradcheck(lambda t: convert(t, in_fmt, out_fmt), (b,))
    torch.autograd.gradcheck(area, (b,))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_box_convert_and_box_area_equal_torchvision(dtype):
    tv = pytest.importorskip("torchvision.ops", reason="torchvision is a benchmark peer, not a dependency")
    convert, area = torch.jit.script(ops.box_convert), torch.jit.script(ops.box_area)
    for n in (60, 0):
        b = format_boxes(n, dtype)
        for in_fmt, out_fmt in FORMAT_PAIRS:
            want = tv.box_convert(b, in_fmt, out_fmt)
            torch.testing.assert_close(convert(b, in_fmt, out_fmt), want, rtol=0, atol=0)
            torch.testing.assert_close(ops.box_convert(b, in_fmt, out_fmt), want, rtol=0, atol=0)
        torch.testing.assert_close(area(b), tv.box_area(b), rtol=0, atol=0)
        torch.testing.assert_close(ops.box_area(b), tv.box_area(b), rtol=0, atol=0)


class BoxStats(nn.Module):
    """Boxes of a given format as centres and sides, and their areas."""

    def __init__(self, in_fmt: str):
        super().__init__()
        self.in_fmt = in_fmt

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xyxy = ops.box_convert(boxes, self.in_fmt, "xyxy")
        return ops.box_convert(xyxy, "xyxy", "cxcywh"), ops.box_area(xyxy)


def test_box_convert_and_box_area_in_scripted_traced_and_fx_modules():
    b, other = format_boxes(40, torch.float32), format_boxes(25, torch.float32, seed=1)
    for in_fmt in FORMATS:
        module = BoxStats(in_fmt)
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        traced = torch.jit.trace(module, (b,))  # the torch ops are recorded, not a constant result
        gm = torch.fx.symbolic_trace(module)
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert targets.count(ops.box_convert) == 2 and targets.count(ops.box_area) == 1
        for x in (b, other, other[:0]):
            want = module(x)
            for got in (scripted(x), loaded(x), traced(x), gm(x)):
                for g, w in zip(got, want):
                    torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_box_convert_and_box_area_compile_fullgraph():
    # aot_eager: the capture without inductor's C++ compile (test_compile_fullgraph_... runs that).
    torch._dynamo.reset()
    module = BoxStats("xywh")
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    for n in (40, 25):
        b = format_boxes(n, torch.float32, seed=n)
        for got, want in zip(compiled(b), module(b)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


# ----------------------------------------------------------------------------- torch.fx
class SmallDetector(nn.Module):
    """conv -> NMS on given boxes -> RoIAlign of the kept ones -> MultiScaleRoIAlign too."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = ops.RoIAlign(3, 0.5, 2)
        self.multi = ops.MultiScaleRoIAlign(["0", "1"], 2, 2, canonical_scale=8, canonical_level=3)

    def forward(self, x, boxes, scores):
        f = self.conv(x)
        keep = ops.nms(boxes, scores, 0.5)
        kept = boxes[keep]
        pooled = self.pool(f, torch.cat([torch.zeros_like(kept[:, :1]), kept], 1))
        multi = self.multi({"0": f, "1": f[:, :, ::2, ::2]}, [kept], [(40, 48)])
        return pooled, multi


def test_fx_symbolic_trace_records_the_ops_as_single_calls():
    torch.manual_seed(0)
    model = SmallDetector()
    x = torch.randn(1, 3, 20, 24)
    b, s = boxes_and_scores(30)
    gm = torch.fx.symbolic_trace(model)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert ops.nms in targets and ops.roi_align in targets
    assert sum(getattr(t, "__name__", "") == "_multiscale_roi_align" for t in targets) == 1
    for got, want in zip(gm(x, b, s), model(x, b, s)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# ----------------------------------------------------------------------------- torch.compile / export
def roi_align_after_nms(x, boxes, scores):
    keep = ops.nms(boxes, scores, 0.5)
    kept = boxes[keep]
    rois = torch.cat([torch.zeros_like(kept[:, :1]), kept], 1)
    return ops.roi_align(x, rois, 3, 0.5, 2, True), keep


def test_compile_fullgraph_runs_roi_align_and_nms():
    # Inductor on the CPU compiles C++ (about 20 s here); aot_eager checks the same capture
    # (fake kernels, functionalisation, autograd) without it.
    x = torch.randn(1, 4, 20, 24, requires_grad=True)
    b, s = boxes_and_scores(30)
    for backend in ("aot_eager", "inductor"):
        torch._dynamo.reset()
        compiled = torch.compile(roi_align_after_nms, fullgraph=True, backend=backend)
        (out, keep), (want, want_keep) = compiled(x, b, s), roi_align_after_nms(x, b, s)
        torch.testing.assert_close(keep, want_keep, rtol=0, atol=0)
        torch.testing.assert_close(out, want)
        (g,) = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(g, torch.autograd.grad(want.sum(), x)[0])


def test_dynamo_sees_no_graph_break_at_the_ops():
    # With data-dependent output sizes captured (nms' result), the whole function is one graph;
    # without it, nms is the only break (its output size depends on the data, as torchvision's).
    x = torch.randn(1, 4, 20, 24)
    b, s = boxes_and_scores(30)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        explained = torch._dynamo.explain(roi_align_after_nms)(x, b, s)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    explained = torch._dynamo.explain(roi_align_after_nms)(x, b, s)
    assert explained.graph_break_count == 1
    assert "pydetect.nms" in explained.break_reasons[0].reason


def test_export_roi_align_module():
    x, rois = roi_case(torch.float32)
    module = ops.RoIAlign((3, 2), 0.5, 2)
    exported = torch.export.export(module, (x, rois))
    assert any(n.target == PD.roi_align.default for n in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(x, rois), module(x, rois), rtol=0, atol=0)


# ----------------------------------------------------------------------------- reprs
def test_module_reprs_show_their_settings():
    assert repr(ops.RoIAlign(7, 0.25, 2)) == \
        "RoIAlign(output_size=(7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False)"
    assert repr(ops.RoIPool((3, 2), 0.5)) == "RoIPool(output_size=(3, 2), spatial_scale=0.5)"
    # torchvision's string for torchvision's settings, and the others when not at their defaults.
    assert repr(ops.MultiScaleRoIAlign(["0"], (7, 7), 2)) == \
        "MultiScaleRoIAlign(featmap_names=['0'], output_size=(7, 7), sampling_ratio=2)"
    assert repr(ops.MultiScaleRoIAlign(["0", "1"], 7, 2, canonical_scale=64, aligned=True)) == (
        "MultiScaleRoIAlign(featmap_names=['0', '1'], output_size=(7, 7), sampling_ratio=2, "
        "canonical_scale=64.0, aligned=True)")


def test_detector_forward_compiles_as_one_graph():
    # The FasterRCNN pieces in eval mode: once dynamo captures data-dependent sizes (boolean
    # masks, NMS results), nothing in the ops or the RoI pooler breaks the graph.
    from pydetect import models

    torch.manual_seed(0)
    heads = models.RoIHeads(models.RoIPooler("0", 4), models.TwoMLPHead(16 * 16, 32), models.FastRCNNPredictor(32, 4))
    model = models.GeneralizedRCNN(models.VGGStyle(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1)),
                                   models.RegionProposalNetwork(models.AnchorGenerator(((16, 32),), ((1.0,),)),
                                                                models.RPNHead(16, 2)),
                                   heads, size_divisible=8).eval()
    images = [torch.rand(3, 48, 64), torch.rand(3, 40, 56)]
    torch._dynamo.reset()
    with torch.no_grad(), torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        explained = torch._dynamo.explain(model)(images)
        assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        for got, want in zip(compiled(images), model(images)):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
