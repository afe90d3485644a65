import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import _reference_roi as ref  # noqa: E402
import pydetect  # noqa: E402
from pydetect import ops  # noqa: E402


def random_case(seed=0, n=2, c=3, h=11, w=13, k=12, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    xy = (torch.rand(k, 2, generator=g, dtype=dtype) * torch.tensor([w, h], dtype=dtype) - 2) / scale
    wh = torch.rand(k, 2, generator=g, dtype=dtype) * 8 / scale
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).to(dtype), xy, xy + wh], 1)
    rois[0, 1:] = torch.tensor([-3.0, -3.0, w + 3.0, h + 3.0]) / scale  # beyond the border
    rois[1, 3:] = rois[1, 1:3]  # zero-size box
    return x, rois


# ----------------------------------------------------------------------------- hand-worked
def linear_map(h=4, w=4):
    # f(y, x) = 4y + x: bilinear interpolation reproduces a linear function exactly.
    y, x = np.mgrid[0:h, 0:w]
    return torch.tensor((4.0 * y + x)[None, None])


def test_roi_align_hand_worked_interior():
    x = linear_map()
    # Box (0,0)-(2,2), 2x2 bins, one sample per bin at bin centres 0.5 and 1.5.
    out = ops.roi_align(x, torch.tensor([[0.0, 0, 0, 2, 2]]), 2, sampling_ratio=1)
    np.testing.assert_allclose(out[0, 0].numpy(), [[2.5, 3.5], [6.5, 7.5]])
    # aligned=True shifts by -0.5: centres at 0 and 1 -> the pixels themselves.
    out = ops.roi_align(x, torch.tensor([[0.0, 0, 0, 2, 2]]), 2, sampling_ratio=1, aligned=True)
    np.testing.assert_allclose(out[0, 0].numpy(), [[0.0, 1.0], [4.0, 5.0]])


def test_roi_align_hand_worked_border_and_outside():
    x = linear_map()
    # Sample at (4, 4): within one pixel of a 4x4 map -> clamped onto pixel (3, 3) = 15.
    out = ops.roi_align(x, torch.tensor([[0.0, 3, 3, 5, 5]]), 1, sampling_ratio=1)
    assert out.item() == 15.0
    # Sample at (6, 6): more than one pixel outside -> 0.
    out = ops.roi_align(x, torch.tensor([[0.0, 5, 5, 7, 7]]), 1, sampling_ratio=1)
    assert out.item() == 0.0
    # Legacy mode: a zero-size box is grown to 1x1: the sample is at (1.5, 1.5) = 7.5.
    out = ops.roi_align(x, torch.tensor([[0.0, 1, 1, 1, 1]]), 1, sampling_ratio=1)
    assert out.item() == 7.5
    # aligned=True keeps it zero-size: adaptive sampling takes no sample -> 0.
    out = ops.roi_align(x, torch.tensor([[0.0, 1, 1, 1, 1]]), 1, aligned=True)
    assert out.item() == 0.0


def test_roi_align_hand_worked_gradient():
    x = linear_map().requires_grad_(True)
    # One sample at (0.5, 0.5) spreads its gradient 1/4 on each of the four pixels.
    out = ops.roi_align(x, torch.tensor([[0.0, 0, 0, 1, 1]]), 1, sampling_ratio=1)
    (g,) = torch.autograd.grad(out.sum(), x)
    expected = np.zeros((4, 4))
    expected[:2, :2] = 0.25
    np.testing.assert_allclose(g[0, 0].numpy(), expected)


def test_roi_pool_hand_worked():
    x = linear_map().requires_grad_(True)
    # Box (0,0)-(2,2) is 3x3 pixels inclusive; 1 bin -> max 4*2+2 = 10 at (2, 2).
    out = ops.roi_pool(x, torch.tensor([[0.0, 0, 0, 2, 2]]), 1)
    assert out.item() == 10.0
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g[0, 0, 2, 2] == 1 and g.sum() == 1
    # A box entirely outside gives empty bins: 0 and no gradient.
    out = ops.roi_pool(x, torch.tensor([[0.0, 10, 10, 12, 12]]), 2)
    assert (out == 0).all()


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2, 3])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_matches_reference(aligned, sampling_ratio, scale):
    x, rois = random_case(scale=scale)
    out = ops.roi_align(x, rois, (3, 4), scale, sampling_ratio, aligned)
    expected = ref.roi_align(x.numpy(), rois.numpy(), (3, 4), scale, sampling_ratio, aligned)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_matches_reference(scale):
    x, rois = random_case(scale=scale)
    out = ops.roi_pool(x, rois, (3, 2), scale)
    np.testing.assert_array_equal(out.numpy(), ref.roi_pool(x.numpy(), rois.numpy(), (3, 2), scale))


def test_float32_close_to_float64():
    x, rois = random_case()
    out32 = ops.roi_align(x.float(), rois.float(), 5, 1.0, 2, True)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref.roi_align(x.numpy(), rois.numpy(), (5, 5), 1.0, 2, True),
                               atol=1e-5)
    assert ops.roi_pool(x.float(), rois.float(), 5).dtype == torch.float32


# ----------------------------------------------------------------------------- input classes
def class_case(kind, seed=0, n=2, c=10, h=11, w=13, k=8, dtype=torch.float64, scale=0.5):
    """Boxes (input pixels at ``scale``) of one input class of issue 23 on an (n, c, h, w) map:
    "outside" (every sample more than one pixel off the map, on all four sides), "partly
    outside" (across a border), "tiny" (under one feature pixel: under one bin), "huge" (1.5 to
    3 times the map). c=10 runs the forward pass through the (H, W, C) copy with padded
    channels (10 is no multiple of the 4 or 8 lanes)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    size = torch.tensor([w, h], dtype=dtype)
    u = torch.rand(k, 2, generator=g, dtype=dtype)
    wh = 1 + torch.rand(k, 2, generator=g, dtype=dtype) * 4
    if kind == "outside":
        side = torch.arange(k) % 4  # right, below, left, above
        xy = u * size
        xy[side == 0, 0] = w + 1.5 + u[side == 0, 0]
        xy[side == 1, 1] = h + 1.5 + u[side == 1, 1]
        xy[side == 2, 0] = -wh[side == 2, 0] - 2.5 - u[side == 2, 0]
        xy[side == 3, 1] = -wh[side == 3, 1] - 2.5 - u[side == 3, 1]
    elif kind == "partly outside":
        xy = u * size - wh / 2
        xy[::2, 0] = torch.where(u[::2, 0] < 0.5, -wh[::2, 0] / 2, w - wh[::2, 0] / 2)
        xy[1::2, 1] = torch.where(u[1::2, 1] < 0.5, -wh[1::2, 1] / 2, h - wh[1::2, 1] / 2)
    elif kind == "tiny":
        wh = 0.05 + torch.rand(k, 2, generator=g, dtype=dtype) * 0.9
        xy = u * (size - 1)
    elif kind == "huge":
        wh = size * (1.5 + 1.5 * torch.rand(k, 2, generator=g, dtype=dtype))
        xy = size / 2 - wh / 2 + (u - 0.5) * size * 0.5
    else:
        raise ValueError(kind)
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).to(dtype), xy / scale, (xy + wh) / scale], 1)
    return x, rois


CLASSES = ["outside", "partly outside", "tiny", "huge"]


@pytest.mark.parametrize("kind", CLASSES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_input_classes_match_reference(kind, aligned, sampling_ratio):
    x, rois = class_case(kind)
    x.requires_grad_(True)
    out = ops.roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    expected = ref.roi_align(x.detach().numpy(), rois.numpy(), (3, 4), 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    (g,) = torch.autograd.grad(out, x, grad)
    expected_g = ref.roi_align_backward(grad.numpy(), rois.numpy(), x.shape, 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(g.numpy(), expected_g, rtol=1e-12, atol=1e-12)
    if kind == "outside":
        assert not out.detach().any() and not g.any()


@pytest.mark.parametrize("kind", CLASSES)
def test_roi_pool_input_classes_match_reference(kind):
    x, rois = class_case(kind)
    x.requires_grad_(True)
    out = ops.roi_pool(x, rois, (3, 4), 0.5)
    np.testing.assert_array_equal(out.detach().numpy(), ref.roi_pool(x.detach().numpy(), rois.numpy(), (3, 4), 0.5))
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    (g,) = torch.autograd.grad(out, x, grad)
    np.testing.assert_allclose(g.numpy(), ref.roi_pool_backward(x.detach().numpy(), grad.numpy(), rois.numpy(), 0.5),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", CLASSES)
def test_roi_align_channel_vectors_equal_plane_by_plane(dtype, kind):
    # From 8 channels on the forward pass runs all channels of a bin together (an (H, W, C)
    # copy in padded blocks); one channel at a time it runs plane by plane. Same terms, same
    # order.
    # The backward pass likewise, into an (H, W, C) gradient. 70 channels: blocks of 64 floats
    # or 32 doubles, the last one partly padded.
    x, rois = class_case(kind, c=70, dtype=dtype)
    x.requires_grad_(True)
    for aligned, sr in [(True, 2), (False, -1)]:
        together = ops.roi_align(x, rois, (3, 4), 0.5, sr, aligned)
        grad = torch.randn(together.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
        (g_together,) = torch.autograd.grad(together, x, grad)
        for i in range(0, 70, 23):
            xi = x.detach()[:, i:i + 1].clone().requires_grad_(True)
            alone = ops.roi_align(xi, rois, (3, 4), 0.5, sr, aligned)
            assert torch.equal(together[:, i:i + 1], alone)
            (g_alone,) = torch.autograd.grad(alone, xi, grad[:, i:i + 1])
            assert torch.equal(g_together[:, i:i + 1], g_alone)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_wide_bins_with_ties_match_reference(dtype):
    # Bins of 8+ columns on average are pooled by columns (vector maxima); few distinct values
    # make ties, which must go to the first maximum in row-major order, as window by window.
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 4, (2, 3, 21, 90), generator=g).to(dtype).requires_grad_(True)
    rois = torch.tensor([[0, -10, -5, 120, 30], [1, 0, 0, 89, 20], [1, 3, 2, 80, 9], [0, 5, 5, 60, 5]], dtype=dtype)
    out = ops.roi_pool(x, rois, (2, 3))
    np.testing.assert_array_equal(out.detach().numpy(), ref.roi_pool(x.detach().numpy(), rois.numpy(), (2, 3)))
    grad = torch.randn(out.shape, generator=g, dtype=dtype)
    (gx,) = torch.autograd.grad(out, x, grad)
    np.testing.assert_allclose(gx.numpy(), ref.roi_pool_backward(x.detach().numpy(), grad.numpy(), rois.numpy()),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, -1), (True, 2), (False, 3)])
def test_roi_align_gradcheck(aligned, sampling_ratio):
    x, rois = random_case(c=2, h=7, w=8, k=6)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: ops.roi_align(t, rois, (2, 3), 1.0, sampling_ratio, aligned), (x,))


def test_roi_pool_gradcheck():
    x, rois = random_case(c=2, h=7, w=8, k=6)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ops.roi_pool(t, rois, (2, 3), 0.5), (x,))


def test_backward_independent_of_thread_count():
    x, rois = random_case(c=40, h=20, w=20, k=64, dtype=torch.float32)
    x.requires_grad_(True)
    grads = []
    old = pydetect.get_num_threads()
    try:
        for threads in (1, 2, 3):
            pydetect.set_num_threads(threads)
            out = ops.roi_align(x, rois, 7, 1.0, -1, True)
            grads.append(torch.autograd.grad(out, x, torch.ones_like(out))[0])
    finally:
        pydetect.set_num_threads(old)
    for g in grads[1:]:
        assert torch.equal(g, grads[0])  # each plane has a single writer: bitwise equal


# ----------------------------------------------------------------------------- formats
def test_list_of_boxes_equals_batch_index_form():
    x, rois = random_case()
    as_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i).squeeze(1) for i in range(2)])
    np.testing.assert_array_equal(ops.roi_align(x, as_list, 3).numpy(), ops.roi_align(x, rois[order], 3).numpy())
    np.testing.assert_array_equal(ops.roi_pool(x, as_list, 3).numpy(), ops.roi_pool(x, rois[order], 3).numpy())


def test_numpy_in_numpy_out_and_non_contiguous():
    x, rois = random_case()
    out = ops.roi_align(x.numpy(), rois.numpy(), 3)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, ops.roi_align(x, rois, 3).numpy())
    assert isinstance(ops.roi_pool(x.numpy(), rois.numpy(), 3), np.ndarray)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, not contiguous
    assert not xt.is_contiguous()
    np.testing.assert_array_equal(ops.roi_align(xt, rois, 3).numpy(), ops.roi_align(x, rois, 3).numpy())


def test_empty_and_single_roi():
    x, rois = random_case()
    x.requires_grad_(True)
    for fn in (ops.roi_align, ops.roi_pool):
        out = fn(x, torch.zeros(0, 5, dtype=x.dtype), (2, 3))
        assert out.shape == (0, 3, 2, 3)
        (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        assert g is None or (g == 0).all()
        assert fn(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 3, 2, 2)
        assert fn(x, rois[:1], 2).shape == (1, 3, 2, 2)


def test_bad_input():
    x, rois = random_case()
    with pytest.raises(ValueError, match="input"):
        ops.roi_align(x[0], rois, 2)
    with pytest.raises(TypeError, match="input"):
        ops.roi_align(x.to(torch.int32), rois, 2)
    with pytest.raises(ValueError, match="boxes"):
        ops.roi_align(x, rois[:, :4], 2)
    bad = rois.clone()
    bad[0, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        ops.roi_align(x, bad, 2)
    bad = rois.clone()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match=r"boxes\[:, 0\]"):
        ops.roi_pool(x, bad, 2)
    bad[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"boxes\[:, 0\]"):
        ops.roi_align(x, bad, 2)
    with pytest.raises(ValueError, match="output_size"):
        ops.roi_align(x, rois, 0)
    with pytest.raises(ValueError, match="spatial_scale"):
        ops.roi_align(x, rois, 2, spatial_scale=-1.0)
    with pytest.raises(ValueError, match="list of 3"):
        ops.roi_align(x, [rois[:, 1:]] * 3, 2)
    with pytest.raises(ValueError, match="shape"):
        ops.roi_align(x, [rois], 2)


# ----------------------------------------------------------------------------- modules
def test_modules_and_pickle():
    x, rois = random_case()
    m = ops.RoIAlign((2, 3), 0.5, 2, True)
    np.testing.assert_array_equal(m(x, rois).numpy(), ops.roi_align(x, rois, (2, 3), 0.5, 2, True).numpy())
    p = ops.RoIPool(3, 0.5)
    np.testing.assert_array_equal(p(x, rois).numpy(), ops.roi_pool(x, rois, 3, 0.5).numpy())
    m2 = pickle.loads(pickle.dumps(m))
    assert isinstance(m2, ops.RoIAlign) and m2.output_size == (2, 3)
    assert "sampling_ratio=2" in repr(m)


def test_multiscale_roi_align_levels():
    g = torch.Generator().manual_seed(1)
    feats = {"0": torch.randn(2, 4, 32, 40, generator=g, dtype=torch.float64),   # stride 4
             "1": torch.randn(2, 4, 16, 20, generator=g, dtype=torch.float64),   # stride 8
             "p": torch.randn(2, 4, 8, 10, generator=g, dtype=torch.float64)}    # stride 16
    boxes = [torch.tensor([[0.0, 0, 20, 20], [10, 10, 120, 110]], dtype=torch.float64),
             torch.tensor([[5.0, 5, 60, 70]], dtype=torch.float64)]
    pooler = ops.MultiScaleRoIAlign(["0", "1", "p"], 3, 2, canonical_scale=64, canonical_level=3)
    out = pooler(feats, boxes, [(128, 160), (120, 150)])
    # Level k = floor(3 + log2(sqrt(area) / 64)), clamped to [2, 4] (strides 4..16).
    # sqrt areas: 20 -> k=1 -> 2 (stride 4); ~105 -> 3 (stride 8); ~62 -> 2 (stride 4).
    rois = torch.cat([torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64), torch.cat(boxes)], 1)
    expected = [ref.roi_align(feats[name].numpy(), rois[i:i + 1].numpy(), (3, 3), s, 2)
                for i, (name, s) in enumerate([("0", 0.25), ("1", 0.125), ("0", 0.25)])]
    np.testing.assert_allclose(out.numpy(), np.concatenate(expected), atol=1e-12)
    with pytest.raises(ValueError, match="lacks"):
        pooler({"0": feats["0"]}, boxes, [(128, 160)] * 2)


def test_multiscale_levels_follow_torchvisions_rule_at_the_boundaries():
    # k = floor(k0 + log2(sqrt(area) / s0) + 1e-6) in float32, the epsilon after the log: a RoI
    # just under a level boundary (sqrt area 0.4999993 * 224: log2 = -1.000002) stays on the finer
    # level, where adding the epsilon inside the log would have moved it up. NaN boxes go to the
    # finest level; every RoI has a level (the result is written row by row).
    pooler = ops.MultiScaleRoIAlign(["0", "1", "2"], 2, 2)
    side = np.float32(224 * 0.4999993)
    boxes = torch.tensor([[0, 0, side, side], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 10, 10],
                          [0, 0, 1000, 1000], [0, 0, 0, 0]], dtype=torch.float32)
    scales = [0.25, 0.125, 0.0625]
    got = pooler.levels(boxes, scales)
    size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    expected = (torch.floor(4 + torch.log2(size / 224) + torch.tensor(1e-6)).clamp(2, 4) - 2).to(torch.int64)
    assert got.tolist() == expected.tolist() == [0, 1, 2, 0, 2, 0]
    nan = pooler.levels(torch.tensor([[0.0, 0, float("nan"), 5]]), scales)
    assert nan.tolist() == [0]


# ----------------------------------------------------------------------------- torchvision
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
def test_parity_with_torchvision(dtype, aligned):
    tv = pytest.importorskip("torchvision.ops", reason="parity with torchvision needs torchvision")
    x, rois = random_case(c=5, h=17, w=19, k=40, dtype=dtype, scale=0.5)
    x.requires_grad_(True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for sr in (-1, 2):
        a = ops.roi_align(x, rois, (4, 3), 0.5, sr, aligned)
        t = tv.roi_align(x, rois, (4, 3), 0.5, sr, aligned)
        torch.testing.assert_close(a, t, atol=tol, rtol=tol)
        grad = torch.randn_like(a)
        torch.testing.assert_close(torch.autograd.grad(a, x, grad)[0], torch.autograd.grad(t, x, grad)[0],
                                   atol=tol, rtol=tol)
    a, t = ops.roi_pool(x, rois, (4, 3), 0.5), tv.roi_pool(x, rois, (4, 3), 0.5)
    torch.testing.assert_close(a, t, atol=0, rtol=0)
    grad = torch.randn_like(a)
    torch.testing.assert_close(torch.autograd.grad(a, x, grad)[0], torch.autograd.grad(t, x, grad)[0])
    if aligned:
        return
    feats = {"a": x.detach(), "b": x.detach()[:, :, ::2, ::2].contiguous()}
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    ours = ops.MultiScaleRoIAlign(["a", "b"], 3, 2)(feats, boxes, [(34, 38), (34, 38)])
    theirs = tv.MultiScaleRoIAlign(["a", "b"], 3, 2)(feats, boxes, [(34, 38), (34, 38)])
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", CLASSES)
def test_input_classes_parity_with_torchvision(dtype, kind):
    tv = pytest.importorskip("torchvision.ops", reason="parity with torchvision needs torchvision")
    x, rois = class_case(kind, c=12, k=16, dtype=dtype)
    x.requires_grad_(True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for aligned, sr in [(True, 2), (False, -1), (True, -1)]:
        a = ops.roi_align(x, rois, (3, 4), 0.5, sr, aligned)
        t = tv.roi_align(x, rois, (3, 4), 0.5, sr, aligned)
        torch.testing.assert_close(a, t, atol=tol, rtol=tol)
        grad = torch.randn_like(a)
        torch.testing.assert_close(torch.autograd.grad(a, x, grad)[0], torch.autograd.grad(t, x, grad)[0],
                                   atol=tol, rtol=tol)
    a, t = ops.roi_pool(x, rois, (3, 4), 0.5), tv.roi_pool(x, rois, (3, 4), 0.5)
    torch.testing.assert_close(a, t, atol=0, rtol=0)
    grad = torch.randn_like(a)
    torch.testing.assert_close(torch.autograd.grad(a, x, grad)[0], torch.autograd.grad(t, x, grad)[0])


@pytest.mark.parametrize("c", [3, 10])  # plane by plane, and through the (H, W, C) copy
def test_roi_align_outside_samples_read_nothing(c):
    # A sample more than one pixel outside contributes nothing: not 0 * pixel (0, 0), which
    # would turn a non-finite pixel there into NaN (torchvision's CPU kernel does).
    x, rois = class_case("outside", c=c)
    x[:, :, 0, 0] = float("nan")
    x[:, :, -1, -1] = float("inf")
    x.requires_grad_(True)
    out = ops.roi_align(x, rois, (3, 4), 0.5, 2, True)
    assert torch.equal(out, torch.zeros_like(out))
    (g,) = torch.autograd.grad(out, x, torch.full_like(out, float("inf")))
    assert torch.equal(g, torch.zeros_like(g))


def test_roi_align_backward_on_a_map_too_large_for_channel_blocks():
    # 1024 x 1025 float32 planes: one vector of 8 channels of gradient would pass the per-thread
    # scratch bound (32 MB), so the backward pass runs plane by plane; same result as a
    # channel at a time.
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 8, 1024, 1025, generator=g).requires_grad_(True)
    rois = torch.tensor([[0, 10.0, 20, 300, 200], [0, -50, 900, 200, 1100], [0, 1000, 3, 1030, 40]])
    out = ops.roi_align(x, rois, (3, 4), 1.0, 2, True)
    grad = torch.randn(out.shape, generator=g)
    (gx,) = torch.autograd.grad(out, x, grad)
    for i in (0, 7):
        xi = x.detach()[:, i:i + 1].clone().requires_grad_(True)
        alone = ops.roi_align(xi, rois, (3, 4), 1.0, 2, True)
        assert torch.equal(out[:, i:i + 1], alone)
        assert torch.equal(gx[:, i:i + 1], torch.autograd.grad(alone, xi, grad[:, i:i + 1])[0])
