"""Selective search: colour spaces, region histograms, similarity-driven grouping (against
from-scratch recomputation), and the public ops.selective_search."""

import numpy as np
import pytest

import _reference_segmentation as ref
import pydetect
from pydetect import _C, ops

HSV, LAB, RGI, H, I = (_C.ColorSpace.HSV, _C.ColorSpace.LAB, _C.ColorSpace.RGI, _C.ColorSpace.H,
                       _C.ColorSpace.I)


def _strategy(mask):
    """The similarity terms of a bit mask (1 colour, 2 texture, 4 size, 8 fill)."""
    return [t for t in _C.SimilarityTerm.__members__.values() if mask & int(t)]


# ----------------------------------------------------------------------------- colour spaces
def test_hsv_and_lab_match_skimage(rng):
    color = pytest.importorskip("skimage.color", reason="scikit-image is the colour peer")
    img = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    img[0, :4] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 10, 10]]  # grey/black corner cases
    hsv = _C.ss_convert_color(img, HSV)
    np.testing.assert_allclose(hsv, color.rgb2hsv(img), atol=1e-5)
    np.testing.assert_allclose(_C.ss_convert_color(img, H)[:, :, 0], color.rgb2hsv(img)[:, :, 0], atol=1e-5)
    lab = color.rgb2lab(img)
    want = np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], -1)
    np.testing.assert_allclose(_C.ss_convert_color(img, LAB), np.clip(want, 0, 1), atol=2e-4)


def test_rgi_and_intensity_by_hand():
    img = np.array([[[30, 60, 90], [0, 0, 0]]], np.uint8)
    np.testing.assert_allclose(_C.ss_convert_color(img, RGI)[0],
                               [[30 / 180, 60 / 180, 180 / 765], [1 / 3, 1 / 3, 0]], atol=1e-6)
    np.testing.assert_allclose(_C.ss_convert_color(img, I)[0, :, 0], [180 / 765, 0], atol=1e-6)


# ----------------------------------------------------------------------------- region features
def test_colour_histogram_hand_worked():
    # 2x2 image, two regions: left column pure red (HSV 0, 1, 1), right column black (0, 0, 0)
    img = np.array([[[255, 0, 0], [0, 0, 0]], [[255, 0, 0], [0, 0, 0]]], np.uint8)
    hsv = _C.ss_convert_color(img, HSV)
    labels = np.array([[0, 1], [0, 1]], np.int32)
    sizes, boxes, color, texture, neighbours = _C.ss_region_features(hsv, labels)
    assert sizes.tolist() == [2, 2]
    assert boxes.tolist() == [[0, 0, 0, 1], [1, 0, 1, 1]]
    red = np.zeros(75)
    red[[0, 25 + 24, 50 + 24]] = 1 / 3  # hue bin 0, saturation bin 24, value bin 24
    black = np.zeros(75)
    black[[0, 25, 50]] = 1 / 3
    np.testing.assert_allclose(color, [red, black], atol=1e-7)
    # histogram intersection = sum of minima: only the shared hue bin 0
    assert np.minimum(color[0], color[1]).sum() == pytest.approx(1 / 3)
    assert texture.shape == (2, 240) and np.allclose(texture.sum(1), 1)
    assert [n.tolist() for n in neighbours] == [[1], [0]]


@pytest.mark.parametrize("space", [HSV, LAB, RGI, H, I])
def test_region_histograms_match_pixel_counts(rng, space):
    img = rng.integers(0, 256, size=(18, 22, 3)).astype(np.uint8)
    img[:, 11:] //= 3  # two different halves, some texture
    conv = _C.ss_convert_color(img, space)
    labels = ops.felzenszwalb(img, scale=300, sigma=0.8, min_size=20)
    sizes, boxes, color, texture, neighbours = _C.ss_region_features(conv, labels)
    tb = ref.texture_bins(conv.astype(np.float64))
    n = labels.max() + 1
    for r in range(n):
        mask = labels == r
        assert sizes[r] == mask.sum()
        assert tuple(boxes[r]) == ref.box_of(mask)
        np.testing.assert_allclose(color[r], ref.color_histogram(conv, mask), atol=1e-6)
        # texture bins may differ at bin edges by float rounding: allow one pixel's worth
        assert np.abs(texture[r] - ref.texture_histogram(tb, mask)).sum() <= 2.0 / mask.sum() + 1e-6
        want_nb = [q for q in range(n) if q != r and ref.adjacent(mask, labels == q)]
        assert neighbours[r].tolist() == want_nb


# ----------------------------------------------------------------------------- grouping
@pytest.mark.parametrize("terms", [15, 14, 8, 4, 1, 2])
def test_grouping_replayed_from_scratch(rng, terms):
    """Every merge must join the most similar adjacent pair, with the similarity recomputed
    from the pixels of the merged regions: this checks the similarity functions and the
    incremental (size-weighted) histogram merges together."""
    img = np.zeros((20, 24, 3), np.uint8)
    img[:] = rng.integers(0, 256, size=(4, 4, 3)).repeat(5, 0).repeat(6, 1).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
    conv = _C.ss_convert_color(img, HSV)
    labels = ops.felzenszwalb(img, scale=100, sigma=0.8, min_size=10)
    n = labels.max() + 1
    assert n >= 6
    merges, sims, boxes = _C.ss_hierarchy(conv, labels, _strategy(terms))
    assert merges.shape == (n - 1, 2) and boxes.shape == (2 * n - 1, 4)
    tb = ref.texture_bins(conv.astype(np.float64))
    masks = {r: labels == r for r in range(n)}
    for step, (a, b) in enumerate(merges):
        pairs = {}
        keys = sorted(masks)
        for i in keys:
            for j in keys:
                if i < j and ref.adjacent(masks[i], masks[j]):
                    pairs[(i, j)] = ref.similarity(conv, tb, masks[i], masks[j], terms)
        best = max(pairs.values())
        assert (min(a, b), max(a, b)) in pairs
        assert pairs[(min(a, b), max(a, b))] == pytest.approx(best, abs=2e-5)
        assert sims[step] == pytest.approx(best, abs=2e-5)
        new = masks.pop(a) | masks.pop(b)
        masks[n + step] = new
        assert tuple(boxes[n + step]) == ref.box_of(new)
    assert len(masks) == 1 and tuple(boxes[-1]) == (0, 0, 23, 19)


# ----------------------------------------------------------------------------- public op
def _scene(rng, h=120, w=160):
    img = np.full((h, w, 3), 200, np.uint8) + rng.integers(0, 8, size=(h, w, 3)).astype(np.uint8)
    objects = [(10, 15, 50, 70), (70, 20, 140, 60), (90, 75, 150, 110)]
    colours = [(200, 30, 30), (30, 160, 40), (20, 40, 190)]
    for (x1, y1, x2, y2), col in zip(objects, colours):
        img[y1:y2, x1:x2] = col
    return img, np.array(objects, np.float32)


@pytest.mark.parametrize("mode", ["single", "fast", "quality"])
def test_finds_the_objects_and_stays_inside(rng, mode):
    img, objects = _scene(rng)
    boxes = ops.selective_search(img, mode)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)  # duplicates removed
    best = ops.box_iou(objects, boxes).max(1)
    assert (best > 0.9).all(), best
    assert [0, 0, 160, 120] in boxes.tolist()  # the whole image is the top of each hierarchy


def test_modes_nest(rng):
    img, _ = _scene(rng)
    single = {tuple(b) for b in ops.selective_search(img, "single").tolist()}
    fast = {tuple(b) for b in ops.selective_search(img, "fast").tolist()}
    quality = {tuple(b) for b in ops.selective_search(img, "quality").tolist()}
    assert fast <= quality and len(single) < len(fast) < len(quality)


def test_deterministic_seeded_and_thread_independent(rng):
    img, _ = _scene(rng)
    a = ops.selective_search(img, "fast", seed=3)
    np.testing.assert_array_equal(a, ops.selective_search(img, "fast", seed=3))
    b = ops.selective_search(img, "fast", seed=4)
    assert not np.array_equal(a, b)  # another ranking...
    assert {tuple(r) for r in a.tolist()} == {tuple(r) for r in b.tolist()}  # ...of the same boxes
    old = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        np.testing.assert_array_equal(a, ops.selective_search(img, "fast", seed=3))
    finally:
        pydetect.set_num_threads(old)
    top = ops.selective_search(img, "fast", seed=3, max_boxes=25)
    np.testing.assert_array_equal(top, a[:25])
    assert ops.selective_search(img, "fast", max_boxes=0).shape == (0, 4)


def test_large_image_is_shrunk_and_boxes_mapped_back(rng):
    img, objects = _scene(rng)
    big = img.repeat(4, 0).repeat(4, 1)  # 480 x 640
    boxes = ops.selective_search(big, "single", max_size=160)
    assert boxes[:, 2].max() <= 640 and boxes[:, 3].max() <= 480
    assert [0, 0, 640, 480] in boxes.tolist()
    assert (ops.box_iou(objects * 4, boxes).max(1) > 0.85).all()


@pytest.mark.parametrize("scales,min_size", [((200,), 100), ((30,), None), ((60.5, 400), 7)])
def test_scales_and_min_size_set_the_segmentation(rng, scales, min_size):
    """Single mode with given scales yields exactly the boxes of the HSV hierarchies grown
    from felzenszwalb(HSV, k, min_size) for each k (min_size None: k, the paper's choice)."""
    img, _ = _scene(rng)
    hsv = _C.ss_convert_color(img, HSV)
    want = set()
    for k in scales:
        labels = ops.felzenszwalb(hsv, scale=k, sigma=0.8, min_size=min_size or round(k))
        inclusive = _C.ss_hierarchy(hsv, labels, _strategy(15))[2]
        want |= {(x1, y1, x2 + 1, y2 + 1) for x1, y1, x2, y2 in inclusive.tolist()}
    got = ops.selective_search(img, "single", scales=scales, min_size=min_size)
    assert {tuple(b) for b in got.tolist()} == want
    np.testing.assert_array_equal(ops.selective_search(img, "fast", scales=np.array([50, 100])),
                                  ops.selective_search(img, "fast"))


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 300, 3), (300, 1, 3), (2, 700, 3), (700, 3), (3, 3)])
def test_tiny_and_elongated_images(rng, shape):
    img = rng.integers(0, 256, size=shape).astype(np.uint8)
    boxes = ops.selective_search(img, "quality")
    h, w = shape[:2]
    assert len(boxes) >= 1 and [0, 0, w, h] in boxes.tolist()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all() and (boxes[:, :2] >= 0).all()


def test_grey_float_and_torch_inputs(rng):
    img, _ = _scene(rng)
    base = ops.selective_search(img, "single")
    np.testing.assert_array_equal(ops.selective_search(img / 255.0, "single"), base)
    grey = img[:, :, 1]
    np.testing.assert_array_equal(ops.selective_search(grey, "single"),
                                  ops.selective_search(np.repeat(grey[:, :, None], 3, 2), "single"))
    torch = pytest.importorskip("torch", reason="torch in -> torch out")
    out = ops.selective_search(torch.from_numpy(img), "single")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), base)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(image=np.zeros((2, 3, 4, 1), np.uint8)), ValueError, "image"),
    (dict(image=np.zeros((0, 4, 3), np.uint8)), ValueError, "image"),
    (dict(image=np.zeros((4, 4, 2), np.uint8)), ValueError, "image"),
    (dict(image=np.zeros((4,), np.uint8)), ValueError, "image"),
    (dict(image=np.full((4, 4, 3), np.nan)), ValueError, "image"),
    (dict(image=np.zeros((4, 4), bool)), TypeError, "image"),
    (dict(image="cat.png"), TypeError, "image"),
    (dict(mode="slow"), ValueError, "mode"),
    (dict(max_boxes=-1), ValueError, "max_boxes"),
    (dict(seed=-2), ValueError, "seed"),
    (dict(min_size=0), ValueError, "min_size"),
    (dict(max_size=0), ValueError, "max_size"),
    (dict(scales=[]), ValueError, "scales"),
    (dict(scales=[100, 0]), ValueError, r"scales\[1\]"),
    (dict(scales=[-5]), ValueError, "scales"),
    (dict(scales=[float("nan")]), ValueError, "scales"),
    (dict(scales=[float("inf")]), ValueError, "scales"),
    (dict(scales=100), TypeError, "scales must be a sequence"),
    (dict(scales="100"), TypeError, "scales must be a sequence"),
    (dict(scales=[None]), TypeError, r"scales\[0\] must be a real number"),
    (dict(scales=np.ones((2, 2))), TypeError, r"scales\[0\] must be a real number"),
])
def test_bad_input(kwargs, exc, match):
    kwargs = {"image": np.zeros((8, 8, 3), np.uint8), **kwargs}
    with pytest.raises(exc, match=match):
        ops.selective_search(**kwargs)


def test_concurrent_calls_from_python_threads(rng):
    """The GIL is released and the kernels keep no shared state: calls from several Python
    threads at once give the sequential results."""
    from concurrent.futures import ThreadPoolExecutor

    images = [_scene(np.random.default_rng(i))[0] for i in range(4)]
    want = [ops.selective_search(img, "fast") for img in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda img: ops.selective_search(img, "fast"), images))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
