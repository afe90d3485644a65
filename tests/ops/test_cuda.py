"""CUDA kernels (pydetect._C_cuda) against the CPU kernels (pydetect._C), and the CNN
detectors' ``device`` parameter.

The kernel tests call ``_C_cuda`` directly on raw device pointers, as pydetect's torch ops do
(helpers below), and compare with the CPU kernel on the same input: NMS keep lists and RoI
pool argmax identical, box_iou equal, RoI outputs and gradients within 1e-5, gradcheck in
float64. They skip without a GPU (or without a CUDA build); the binding's argument checks and
the host half of NMS (``_C.nms_reduce_mask``) run on the CPU.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect import _C  # noqa: E402
from pydetect.data import digits_in_clutter  # noqa: E402
from pydetect.detectors import RCNN, FastRCNN, FasterRCNN, NotFittedError, Pretraining  # noqa: E402

try:
    from pydetect import _C_cuda
except ImportError:  # a build without the CUDA toolkit
    _C_cuda = None


def _gpu_ready() -> bool:
    return _C_cuda is not None and _C_cuda.device_count() > 0 and torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_cuda_build = pytest.mark.skipif(_C_cuda is None, reason="pydetect was built without CUDA (no _C_cuda)")
needs_gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs pydetect's CUDA kernels and a visible GPU")

DTYPES = [torch.float32, torch.float64]
ATOL = 1e-5


# ----------------------------------------------------------------------------- helpers
# What pydetect's torch ops do with a CUDA tensor: raw pointers, sizes, element type, stream.
def _code(t):
    return {torch.float32: _C_cuda.FloatType.FLOAT32, torch.float64: _C_cuda.FloatType.FLOAT64}[t.dtype]


def _index(t):
    return t.device.index


def _stream(t):
    return torch.cuda.current_stream(t.device).cuda_stream


def _gpu(t):
    return t.contiguous().cuda()


def cuda_box_iou(a, b):
    a, b = _gpu(a), _gpu(b)
    out = torch.empty(len(a), len(b), dtype=a.dtype, device=a.device)
    _C_cuda.box_iou(_index(a), a.data_ptr(), len(a), b.data_ptr(), len(b), out.data_ptr(), _code(a), _stream(a))
    return out.cpu()


def cuda_nms_mask(sorted_boxes, iou_threshold):
    b = _gpu(sorted_boxes)
    n = len(b)
    mask = torch.full((n, (n + 63) // 64), -1, dtype=torch.int64, device=b.device)  # all bits set
    _C_cuda.nms_mask(_index(b), b.data_ptr(), n, iou_threshold, mask.data_ptr(), _code(b), _stream(b))
    return mask.cpu().numpy()


def cuda_nms(boxes, scores, iou_threshold):
    """Kept indices by decreasing score: the GPU mask, reduced on the host."""
    order = torch.sort(scores, descending=True, stable=True).indices  # equal scores: lower index first
    return order[torch.from_numpy(_C.nms_reduce_mask(cuda_nms_mask(boxes[order], iou_threshold)))]


def cuda_roi_align(x, rois, ph, pw, scale, sampling_ratio, aligned, grad_out=None):
    """(output, input gradient of grad_out or None), on the CPU."""
    x, rois = _gpu(x), _gpu(rois)
    n, c, h, w = x.shape
    args = (_code(x), n, c, h, w, len(rois), ph, pw, scale, sampling_ratio, aligned, _stream(x))
    out = torch.empty(len(rois), c, ph, pw, dtype=x.dtype, device=x.device)
    _C_cuda.roi_align_forward(_index(x), x.data_ptr(), rois.data_ptr(), out.data_ptr(), *args)
    if grad_out is None:
        return out.cpu(), None
    g = _gpu(grad_out)
    grad_in = torch.zeros_like(x)
    _C_cuda.roi_align_backward(_index(x), g.data_ptr(), rois.data_ptr(), grad_in.data_ptr(), *args)
    return out.cpu(), grad_in.cpu()


def cuda_roi_pool(x, rois, ph, pw, scale, grad_out=None):
    """(output, argmax, input gradient of grad_out or None), on the CPU."""
    x, rois = _gpu(x), _gpu(rois)
    n, c, h, w = x.shape
    sizes = (n, c, h, w, len(rois), ph, pw)
    out = torch.empty(len(rois), c, ph, pw, dtype=x.dtype, device=x.device)
    argmax = torch.empty(out.shape, dtype=torch.int64, device=x.device)
    _C_cuda.roi_pool_forward(_index(x), x.data_ptr(), rois.data_ptr(), out.data_ptr(), argmax.data_ptr(), _code(x),
                             *sizes, scale, _stream(x))
    if grad_out is None:
        return out.cpu(), argmax.cpu(), None
    g = _gpu(grad_out)
    grad_in = torch.zeros_like(x)
    _C_cuda.roi_pool_backward(_index(x), g.data_ptr(), argmax.data_ptr(), rois.data_ptr(), grad_in.data_ptr(),
                              _code(x), *sizes, _stream(x))
    return out.cpu(), argmax.cpu(), grad_in.cpu()


# ----------------------------------------------------------------------------- inputs
def random_boxes(n, dtype, seed, *, degenerate=True):
    """Clustered boxes (many overlaps, exact duplicates, equal scores) with, optionally,
    zero-size, inverted and NaN boxes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(n // 8, 1), 2, generator=g, dtype=torch.float64) * 200
    xy = centres[torch.randint(0, len(centres), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 6
    wh = 5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 40
    boxes = torch.cat([xy, xy + wh], 1).to(dtype)
    scores = (torch.rand(n, generator=g) * 20).round().to(dtype)  # many equal scores
    if n >= 8:
        boxes[1] = boxes[0]  # a duplicate
    if degenerate and n >= 8:
        boxes[2, 2:] = boxes[2, :2]  # zero size
        boxes[3, 2], boxes[3, 0] = boxes[3, 0], boxes[3, 2]  # inverted
        boxes[4, 1] = float("nan")
        boxes[5, 3] = float("nan")
    return boxes, scores


def random_rois(n, c, h, w, k, dtype, seed, scale=1.0):
    """Features (N, C, H, W) and RoIs (K, 5) including boxes outside the map, zero-size,
    inverted and huge boxes (the sampling cap) and images without RoIs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    xy = (torch.rand(k, 2, generator=g, dtype=dtype) * torch.tensor([w + 4.0, h + 4.0], dtype=dtype) - 2) / scale
    wh = torch.rand(k, 2, generator=g, dtype=dtype) * torch.tensor([w, h], dtype=dtype) / scale
    rois = torch.cat([torch.randint(0, max(n - 1, 1), (k, 1), generator=g).to(dtype), xy, xy + wh], 1)
    special = [[-3.0, -3.0, w + 3.0, h + 3.0],  # covers the map and its border
               [w + 5.0, h + 5.0, w + 9.0, h + 9.0],  # entirely outside
               [-9.0, -9.0, -4.0, -4.0],  # outside, on the other side
               [2.0, 3.0, 2.0, 3.0],  # zero size
               [6.0, 5.0, 1.0, 2.0],  # inverted
               [-3e3, -3e3, 3e3, 3e3]]  # wider than MAX_SAMPLING_RATIO samples per bin
    for i, box in enumerate(special[:k]):
        rois[i, 1:] = torch.tensor(box, dtype=dtype) / scale
    return x, rois


# ----------------------------------------------------------------------------- host half of NMS
def host_mask(boxes, iou_threshold=0.5):
    """The mask nms_mask computes, from the CPU IoU (boxes in visiting order): bit j of row i
    set when j > i and IoU(i, j) > iou_threshold, compared in double."""
    n = len(boxes)
    iou = _C.box_iou(boxes, boxes).astype(np.float64)
    with np.errstate(invalid="ignore"):
        suppress = np.triu(iou > iou_threshold, 1)
    words = np.zeros((n, (n + 63) // 64), np.uint64)
    for i, j in zip(*np.nonzero(suppress)):
        words[i, j // 64] |= np.uint64(1) << np.uint64(j % 64)
    return words


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 130, 400])
def test_nms_reduce_mask_is_greedy_nms(n):
    boxes, scores = random_boxes(n, torch.float64, seed=n)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order].numpy()
    keep = order[torch.from_numpy(_C.nms_reduce_mask(host_mask(sorted_boxes)))]
    np.testing.assert_array_equal(keep.numpy(), _C.nms(boxes.numpy(), scores.numpy(), 0.5))
    # int64 words (torch's type for the mask) are read as the same bit patterns.
    np.testing.assert_array_equal(_C.nms_reduce_mask(host_mask(sorted_boxes).view(np.int64)),
                                  _C.nms_reduce_mask(host_mask(sorted_boxes)))


def test_nms_reduce_mask_reads_only_the_upper_triangle():
    mask = np.zeros((3, 1), np.uint64)
    mask[1, 0] = 1 << 0  # box 1 "suppressing" box 0: below the diagonal, never read
    mask[0, 0] = 1 << 2
    np.testing.assert_array_equal(_C.nms_reduce_mask(mask), [0, 1])


@pytest.mark.parametrize("bad", [np.zeros((3, 2), np.uint64), np.zeros((65, 1), np.uint64),
                                 np.zeros(3, np.uint64), np.zeros((3, 1), np.float64),
                                 np.zeros((3, 1), np.int32)])
def test_nms_reduce_mask_rejects_bad_masks(bad):
    with pytest.raises(ValueError, match=r"mask must be a uint64 or int64 array of shape \(n, ceil\(n / 64\)\)"):
        _C.nms_reduce_mask(bad)


# ----------------------------------------------------------------------------- binding checks
@needs_cuda_build
def test_device_count_is_a_count():
    count = _C_cuda.device_count()
    assert isinstance(count, int) and count >= 0


F32 = _C_cuda.FloatType.FLOAT32 if _C_cuda is not None else None
F64 = _C_cuda.FloatType.FLOAT64 if _C_cuda is not None else None


@needs_cuda_build
@pytest.mark.parametrize("call, match", [
    (lambda: _C_cuda.box_iou(0, 0, 2, 8, 1, 8, F32, 0), "a_ptr is a null pointer"),
    (lambda: _C_cuda.box_iou(0, 8, -1, 8, 1, 8, F32, 0), "n must be >= 0"),
    (lambda: _C_cuda.box_iou(0, 8, 2**62, 8, 2**62, 8, F32, 0), "more elements than int64"),
    (lambda: _C_cuda.box_iou(-1, 8, 1, 8, 1, 8, F32, 0), "device must be"),
    (lambda: _C_cuda.box_iou(0, 12, 1, 8, 1, 8, F64, 0), "a_ptr is not aligned to 8 bytes"),
    (lambda: _C_cuda.nms_mask(0, 8, 65536 * 64, 0.5, 8, F32, 0), "at most 65535"),
    (lambda: _C_cuda.roi_align_forward(0, 8, 8, 8, F32, 1, 1, 4, 4, 1, 2, 2, 1.0, 257, False, 0), "sampling_ratio"),
    (lambda: _C_cuda.roi_align_forward(0, 8, 8, 8, F32, 1, 1, 0, 4, 1, 2, 2, 1.0, 2, False, 0), "H and W must be > 0"),
    (lambda: _C_cuda.roi_align_backward(0, 8, 8, 8, F32, 1, 1, 2**16, 2**16, 1, 2, 2, 1.0, 2, False, 0),
     "fewer than 2\\^31 pixels"),
    (lambda: _C_cuda.roi_pool_forward(0, 8, 8, 8, 8, F32, 1, 1, 4, 4, 1, 0, 2, 1.0, 0), "pooled_h and pooled_w"),
    (lambda: _C_cuda.roi_pool_backward(0, 8, 8, 8, 8, F32, 1, -1, 4, 4, 1, 2, 2, 0), "C must be >= 0"),
    (lambda: _C_cuda.roi_pool_backward(0, 8, 0, 8, 8, F32, 1, 1, 4, 4, 1, 2, 2, 0), "argmax_ptr is a null pointer"),
])
def test_bad_arguments_are_value_errors_before_any_launch(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@needs_cuda_build
@pytest.mark.parametrize("code", [0, 1, 2, "float32", None])
def test_the_element_type_is_the_enum_not_a_code(code):
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _C_cuda.box_iou(0, 8, 1, 8, 1, 8, code, 0)


# ----------------------------------------------------------------------------- box_iou, nms
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m", [(0, 0), (0, 5), (5, 0), (1, 1), (37, 53), (130, 70)])
def test_box_iou_equals_cpu(n, m, dtype):
    a, _ = random_boxes(n, dtype, seed=n)
    b, _ = random_boxes(m, dtype, seed=m + 1)
    np.testing.assert_array_equal(cuda_box_iou(a, b).numpy(), _C.box_iou(a.numpy(), b.numpy()))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 200, 1000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_keeps_the_cpu_boxes(n, dtype, iou_threshold):
    boxes, scores = random_boxes(n, dtype, seed=n)
    keep = cuda_nms(boxes, scores, iou_threshold)
    np.testing.assert_array_equal(keep.numpy(), _C.nms(boxes.numpy(), scores.numpy(), iou_threshold))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 64, 65, 200])
def test_nms_mask_is_the_upper_triangle_of_the_cpu_decisions(n, dtype):
    boxes, _ = random_boxes(n, dtype, seed=n)
    for threshold in (0.0, 0.5):
        mask = cuda_nms_mask(boxes, threshold)  # filled with ones first: every word is written
        np.testing.assert_array_equal(mask.view(np.uint64), host_mask(boxes.numpy(), threshold))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_compares_the_iou_with_the_threshold_in_double(dtype):
    # IoU of these two boxes is 1/3 in float32 and float64 alike: the threshold just below
    # and just above 1/3 (as doubles) decide differently, on the GPU as on the CPU.
    boxes = torch.tensor([[0.0, 0, 2, 1], [1.0, 0, 3, 1]], dtype=dtype)
    scores = torch.tensor([1.0, 0.5], dtype=dtype)
    iou = float(torch.tensor(1.0, dtype=dtype) / 3)
    for threshold in (np.nextafter(iou, 0), iou, np.nextafter(iou, 1)):
        keep = cuda_nms(boxes, scores, float(threshold))
        np.testing.assert_array_equal(keep.numpy(), _C.nms(boxes.numpy(), scores.numpy(), float(threshold)))
    assert len(cuda_nms(boxes, scores, float(np.nextafter(iou, 0)))) == 1
    assert len(cuda_nms(boxes, scores, iou)) == 2


# ----------------------------------------------------------------------------- RoI align
ROI_SHAPES = [  # (N, C, H, W, K)
    (1, 1, 1, 1, 1),
    (2, 3, 11, 13, 12),
    (3, 4, 7, 30, 40),  # the last image has no RoI
    (2, 0, 5, 5, 4),  # no channels
    (2, 3, 6, 6, 0),  # no RoIs
]


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROI_SHAPES)
@pytest.mark.parametrize("sampling_ratio, aligned, scale", [(-1, False, 1.0), (2, True, 0.5), (0, True, 0.25),
                                                            (3, False, 1.0), (1, True, 1.0)])
def test_roi_align_matches_cpu(shape, dtype, sampling_ratio, aligned, scale):
    n, c, h, w, k = shape
    x, rois = random_rois(n, c, h, w, k, dtype, seed=sum(shape), scale=scale)
    ph, pw = 3, 2
    grad_out = torch.randn(k, c, ph, pw, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out, grad = cuda_roi_align(x, rois, ph, pw, scale, sampling_ratio, aligned, grad_out)
    cpu_out = _C.roi_align_forward(x.numpy(), rois.numpy(), scale, ph, pw, sampling_ratio, aligned)
    cpu_grad = _C.roi_align_backward(grad_out.numpy(), rois.numpy(), scale, ph, pw, n, c, h, w, sampling_ratio,
                                     aligned)
    np.testing.assert_allclose(out.numpy(), cpu_out, rtol=ATOL, atol=ATOL)
    np.testing.assert_allclose(grad.numpy(), cpu_grad, rtol=ATOL, atol=ATOL)


@needs_gpu
def test_roi_align_an_invalid_batch_index_gives_nan_not_a_fault():
    # pydetect.ops refuses such RoIs before any kernel runs; the kernel itself must still
    # stay inside its arrays.
    x, rois = random_rois(2, 2, 6, 6, 3, torch.float64, seed=0)
    rois[1, 0] = 7.0
    out, grad = cuda_roi_align(x, rois, 2, 2, 1.0, 2, False, torch.ones(3, 2, 2, 2, dtype=torch.float64))
    assert out[1].isnan().all() and not out[[0, 2]].isnan().any()
    keep = torch.tensor([0, 2])
    _, grad_without = cuda_roi_align(x, rois[keep], 2, 2, 1.0, 2, False, torch.ones(2, 2, 2, 2, dtype=torch.float64))
    torch.testing.assert_close(grad, grad_without)


# ----------------------------------------------------------------------------- RoI pool
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROI_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_matches_cpu(shape, dtype, scale):
    n, c, h, w, k = shape
    x, rois = random_rois(n, c, h, w, k, dtype, seed=sum(shape), scale=scale)
    x[..., 0, 0] = float("nan")  # NaN never wins a bin
    if h > 1:
        x[..., -1, :] = x[..., -2, :]  # ties: the first in row-major order wins
    ph, pw = 2, 3
    grad_out = torch.randn(k, c, ph, pw, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out, argmax, grad = cuda_roi_pool(x, rois, ph, pw, scale, grad_out)
    cpu_out, cpu_argmax = _C.roi_pool_forward(x.numpy(), rois.numpy(), scale, ph, pw)
    cpu_grad = _C.roi_pool_backward(grad_out.numpy(), cpu_argmax, rois.numpy(), n, c, h, w)
    np.testing.assert_array_equal(out.numpy(), cpu_out)
    np.testing.assert_array_equal(argmax.numpy(), cpu_argmax)
    np.testing.assert_allclose(grad.numpy(), cpu_grad, rtol=ATOL, atol=ATOL)


# ----------------------------------------------------------------------------- gradcheck
def _autograd_functions():
    class Align(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, rois, sampling_ratio, aligned):
            ctx.save_for_backward(rois)
            ctx.args = (x.shape, sampling_ratio, aligned)
            return cuda_roi_align(x, rois, 3, 3, 0.5, sampling_ratio, aligned)[0].to(x.device)

        @staticmethod
        def backward(ctx, grad_out):
            (rois,), (shape, sampling_ratio, aligned) = ctx.saved_tensors, ctx.args
            x = torch.zeros(shape, dtype=grad_out.dtype, device=grad_out.device)
            grad = cuda_roi_align(x, rois, 3, 3, 0.5, sampling_ratio, aligned, grad_out)[1]
            return grad.to(grad_out.device), None, None, None

    class Pool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, rois):
            ctx.save_for_backward(x, rois)
            return cuda_roi_pool(x, rois, 2, 2, 0.5)[0].to(x.device)

        @staticmethod
        def backward(ctx, grad_out):
            x, rois = ctx.saved_tensors
            return cuda_roi_pool(x, rois, 2, 2, 0.5, grad_out)[2].to(grad_out.device), None

    return Align, Pool


@needs_gpu
@pytest.mark.parametrize("sampling_ratio, aligned", [(2, False), (-1, True)])
def test_roi_align_gradcheck_on_the_gpu(sampling_ratio, aligned):
    align, _ = _autograd_functions()
    x, rois = random_rois(2, 2, 8, 9, 7, torch.float64, seed=3, scale=0.5)
    x = x.cuda().requires_grad_(True)
    # nondet_tol: atomic adds in another order may change the last bits of the gradient.
    assert torch.autograd.gradcheck(lambda t: align.apply(t, rois.cuda(), sampling_ratio, aligned), (x,),
                                    nondet_tol=1e-12)


@needs_gpu
def test_roi_pool_gradcheck_on_the_gpu():
    _, pool = _autograd_functions()
    x, rois = random_rois(2, 2, 8, 9, 7, torch.float64, seed=4, scale=0.5)
    x = x.cuda().requires_grad_(True)  # random values: no ties, so the max is differentiable
    assert torch.autograd.gradcheck(lambda t: pool.apply(t, rois.cuda()), (x,), nondet_tol=1e-12)


# ----------------------------------------------------------------------------- streams, devices
@needs_gpu
def test_kernels_run_on_the_given_stream():
    x, rois = random_rois(2, 3, 40, 50, 300, torch.float32, seed=5)
    expected = _C.roi_align_forward(x.numpy(), rois.numpy(), 1.0, 7, 7, 2, True)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out, _ = cuda_roi_align(x, rois, 7, 7, 1.0, 2, True)  # .cpu() waits for the current stream
    np.testing.assert_allclose(out.numpy(), expected, rtol=ATOL, atol=ATOL)


@needs_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_kernels_run_on_the_tensors_device():
    boxes, scores = random_boxes(300, torch.float32, seed=6)
    with torch.cuda.device(1):
        keep = cuda_nms(boxes, scores, 0.5)
    np.testing.assert_array_equal(keep.numpy(), _C.nms(boxes.numpy(), scores.numpy(), 0.5))


# ----------------------------------------------------------------------------- device parameter
@pytest.fixture(scope="module")
def tiny_data():
    return digits_in_clutter("train", n_images=2, seed=3)


def tiny_faster(**kw):
    params = dict(pretrain=None, max_iter=2, batch_size=1, progress=False, seed=0,
                  rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))
    return FasterRCNN(**dict(params, **kw))


@pytest.mark.parametrize("cls", [FasterRCNN, FastRCNN, RCNN])
def test_device_is_a_parameter_defaulting_to_cpu(cls):
    assert cls().get_params()["device"] == "cpu"
    assert cls(device="cuda:1").get_params()["device"] == "cuda:1"  # stored as given, checked at fit


@pytest.mark.parametrize("cls", [FasterRCNN, FastRCNN, RCNN])
@pytest.mark.parametrize("device, error", [("gpu", ValueError), ("cuda:-1", ValueError), ("cuda:x", ValueError),
                                           ("mps", ValueError), (torch.device("meta"), ValueError),
                                           (0, TypeError), (None, TypeError)])
def test_a_bad_device_is_refused_by_name_before_training(cls, device, error, tiny_data):
    with pytest.raises(error, match="device must be 'cpu', 'cuda', 'cuda:N'"):
        cls(device=device, progress=False).fit(tiny_data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("cls", [FasterRCNN, FastRCNN, RCNN])
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_a_gpu_is_refused_at_fit_not_at_construction(cls, device, tiny_data):
    det = cls(device=device, progress=False)
    with pytest.raises(ValueError, match="device=.*CUDA is not available"):
        det.fit(tiny_data)


@pytest.fixture(scope="module")
def faster_on_cpu(tiny_data):
    torch.manual_seed(0)
    return tiny_faster(device=torch.device("cpu")).fit(tiny_data)


def test_fit_and_predict_on_device_cpu(faster_on_cpu, tiny_data):
    assert faster_on_cpu.get_params()["device"] == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in faster_on_cpu.model_.parameters())
    d = faster_on_cpu.predict(tiny_data[0][0])
    assert isinstance(d.boxes, np.ndarray) and d.boxes.shape[1] == 4


def test_saved_on_cpu_loads_on_the_requested_device(faster_on_cpu, tiny_data, tmp_path):
    path = tmp_path / "cpu.model"
    faster_on_cpu.save(path)
    image = tiny_data[1][0]
    expected = faster_on_cpu.predict(image)
    loaded = FasterRCNN.load(path)
    assert loaded.device == "cpu"  # a torch.device is saved by name
    for device in ("cpu", torch.device("cpu")):
        again = FasterRCNN.load(path, device=device)
        assert again.get_params()["device"] == device
        d = again.predict(image)
        np.testing.assert_array_equal(d.boxes, expected.boxes)
        np.testing.assert_array_equal(d.scores, expected.scores)
        np.testing.assert_array_equal(d.labels, expected.labels)
    if not torch.cuda.is_available():
        # Loading for a GPU succeeds anywhere; using it needs one.
        on_gpu = FasterRCNN.load(path, device="cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            on_gpu.predict(image)


# Detections of a barely trained model sit near the score threshold and in near ties, so
# the GPU tests compare what is exact (weights) or smooth (features), not detection lists.
@needs_gpu
def test_saved_on_cpu_runs_on_the_gpu(faster_on_cpu, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convolutions
    path = tmp_path / "cpu.model"
    faster_on_cpu.save(path)
    on_gpu = FasterRCNN.load(path, device="cuda")
    d = on_gpu.predict(tiny_data[1][0])  # moves the model to the GPU
    assert isinstance(d.boxes, np.ndarray) and d.boxes.shape[1] == 4
    assert all(p.device.type == "cuda" for p in on_gpu.model_.parameters())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = list(faster_on_cpu.model_.backbone(x).values())[-1]
        b = list(on_gpu.model_.backbone(x.cuda()).values())[-1].cpu()
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@needs_gpu
def test_fit_on_the_gpu_saves_and_loads_on_the_cpu(tiny_data, tmp_path):
    det = tiny_faster(device="cuda", pretrain=Pretraining(seconds=2, epochs=1)).fit(tiny_data)
    assert all(p.device.type == "cuda" for p in det.model_.parameters())
    path = tmp_path / "gpu.model"
    det.save(path)
    on_cpu = FasterRCNN.load(path, device="cpu")
    for (name, a), b in zip(det.model_.state_dict().items(), on_cpu.model_.state_dict().values()):
        assert torch.equal(a.cpu(), b), name
    d = on_cpu.predict(tiny_data[0][0])
    assert isinstance(d.boxes, np.ndarray) and d.boxes.shape[1] == 4


def test_load_device_override_needs_a_cnn_detector(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from pydetect.detectors import ViolaJonesDetector

    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    vj = ViolaJonesDetector.from_cascade(xml, class_name="face", min_neighbors=3, window=(24, 24))
    vj.save(tmp_path / "vj.model")
    with pytest.raises(ValueError, match="has no device parameter"):
        ViolaJonesDetector.load(tmp_path / "vj.model", device="cpu")


def test_predict_before_fit_is_still_not_fitted():
    with pytest.raises(NotFittedError):
        FasterRCNN(device="cuda").predict(np.zeros((20, 20), np.uint8))
