import numpy as np
import pytest

from pydetect.data import DetectionDataset
from pydetect.data import transforms as T

cv2 = pytest.importorskip("cv2", reason="transforms resize with OpenCV")


def _sample():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:20, 5:25] = 255  # a white box exactly under the first target box
    target = {"boxes": np.array([[5, 10, 25, 20], [40, 0, 60, 40]], np.float32), "labels": np.array([1, 2]),
              "iscrowd": np.array([False, True]), "difficult": np.zeros(2, bool), "area": np.array([200.0, 800.0])}
    return img, target


def _white_box(img):
    ys, xs = np.nonzero(img[:, :, 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hflip_moves_boxes_with_pixels():
    img, t = _sample()
    out, tt = T.RandomHorizontalFlip(p=1.0)(img, t)
    np.testing.assert_array_equal(tt["boxes"], [[35, 10, 55, 20], [0, 0, 20, 40]])
    np.testing.assert_array_equal(_white_box(out), tt["boxes"][0])
    same, ts = T.RandomHorizontalFlip(p=0.0)(img, t)
    assert same is img and ts is t


def test_resize_min_max_and_exact():
    img, t = _sample()
    r = T.Resize(min_size=80, max_size=100)  # 40x60 -> scale min(2, 100/60) = 1.667 -> 67x100
    out, tt = r(img, t)
    assert out.shape[:2] == (67, 100)
    np.testing.assert_allclose(tt["boxes"][0], [5 * 100 / 60, 10 * 67 / 40, 25 * 100 / 60, 20 * 67 / 40], rtol=1e-6)
    np.testing.assert_allclose(tt["area"], t["area"] * (100 / 60) * (67 / 40))
    out, tt = T.Resize((80, 120))(img, t)
    np.testing.assert_allclose(_white_box(out), tt["boxes"][0], atol=1)
    with pytest.raises(ValueError, match="size"):
        T.Resize()


def test_random_crop_clips_and_drops():
    img, t = _sample()
    crop = T.RandomCrop(min_scale=0.5, max_scale=0.9, min_visible=0.5, seed=0)
    for _ in range(20):
        out, tt = crop(img, t)
        h, w = out.shape[:2]
        b = tt["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert len(tt["labels"]) == len(b) == len(tt["iscrowd"]) == len(tt["difficult"])
        if 1 in tt["labels"].tolist():  # the white box, clipped, is where the pixels are
            j = tt["labels"].tolist().index(1)
            np.testing.assert_array_equal(_white_box(out), b[j])
        assert "area" not in tt
    with pytest.raises(ValueError, match="min_scale"):
        T.RandomCrop(min_scale=0.9, max_scale=0.5)


def test_photometric_jitter_keeps_targets_and_is_seeded():
    img, t = _sample()
    img = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    a, ta = T.PhotometricJitter(seed=3)(img, t)
    b, _ = T.PhotometricJitter(seed=3)(img, t)
    assert ta is t and a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, img)
    ident, _ = T.PhotometricJitter(0, 0, 0, 0)(img, t)
    np.testing.assert_array_equal(ident, img)


def test_compose_and_transformed_dataset():
    img, t = _sample()
    ds = DetectionDataset([img], [t], ["a", "b", "c"])
    tds = T.TransformedDataset(ds, T.Compose([T.RandomHorizontalFlip(1.0), T.Resize((20, 30))]))
    out, tt = tds[0]
    assert out.shape == (20, 30, 3) and len(tds) == 1 and tds.class_names == ds.class_names
    np.testing.assert_allclose(tt["boxes"][0], [17.5, 5, 27.5, 10])


# ----------------------------------------------------------------------------- augmentation
def _rect_image(h=60, w=80, box=(20, 10, 50, 30)):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img, {"boxes": np.array([box], np.float32), "labels": np.array([0])}


def _bright_extent(img):
    ys, xs = np.nonzero(img[:, :, 0] > 127)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_random_scale_moves_boxes_and_proposals_with_the_pixels():
    # A bright rectangle on black: after each random resize its pixels must still fill the
    # resized box (to within the one-pixel blur of interpolation); proposals move the same way.
    from pydetect.data.transforms import RandomScale

    img, target = _rect_image()
    target["proposals"] = target["boxes"].copy()
    t = RandomScale((0.6, 1.6))
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(6):
        out, tt = t(img, target, rng)
        h, w = out.shape[:2]
        sizes.add((h, w))
        x1, y1, x2, y2 = tt["boxes"][0]
        assert [x1, y1, x2, y2] == pytest.approx([20 * w / 80, 10 * h / 60, 50 * w / 80, 30 * h / 60], rel=1e-6)
        np.testing.assert_array_equal(tt["proposals"], tt["boxes"])
        bx1, by1, bx2, by2 = _bright_extent(out)
        assert abs(bx1 - x1) <= 1 and abs(bx2 - x2) <= 1 and abs(by1 - y1) <= 1 and abs(by2 - y2) <= 1
    assert len(sizes) == 6
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((1.2, 0.8))


def test_random_shear_box_covers_the_slanted_object():
    from pydetect.data.transforms import RandomShear

    img, target = _rect_image(h=80, w=100, box=(40, 20, 60, 60))
    t = RandomShear(0.3, p=1.0)
    rng = np.random.default_rng(3)
    for _ in range(5):
        out, tt = t(img, target, rng)
        assert out.shape == img.shape
        x1, y1, x2, y2 = tt["boxes"][0]
        bx1, by1, bx2, by2 = _bright_extent(out)
        # Tight: the box is the slanted rectangle's extent (to the pixel), rows unchanged.
        assert abs(bx1 - x1) <= 1 and abs(bx2 - x2) <= 1 and (y1, y2) == (20, 60)
        assert (x2 - x1) - 20 == pytest.approx(abs((bx2 - bx1) - 20), abs=1.5)


def test_photometric_steps_against_their_definitions():
    from pydetect.data.transforms import RandomGaussianBlur, RandomGrayscale, RandomInvert, RandomNoise

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    _, target = _rect_image()
    out, tt = RandomInvert(p=1.0)(img, target, rng)
    np.testing.assert_array_equal(out, 255 - img)
    assert tt is target
    assert RandomInvert(p=0.0)(img, target, rng)[0] is img
    grey = RandomGrayscale(p=1.0)(img, target, rng)[0]
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(grey[:, :, 0].astype(np.float64) - luma).max() <= 1.0
    assert (grey == grey[:, :, :1]).all()
    # Blur: a separable Gaussian with sigma 1 and a mirrored border (scipy's "mirror" is
    # OpenCV's BORDER_REFLECT_101), radius 3 as OpenCV's 8-bit kernel size 7 for sigma 1.
    ndi = pytest.importorskip("scipy.ndimage")
    blurred = RandomGaussianBlur(p=1.0, sigma_range=(1.0, 1.0))(img, target, rng)[0]
    expected = ndi.gaussian_filter(img.astype(np.float64), sigma=(1.0, 1.0, 0), mode="mirror", truncate=3.0)
    assert np.abs(blurred - expected).max() <= 1.0
    flat = np.full((200, 200, 3), 128, np.uint8)
    noisy = RandomNoise(p=1.0, std_range=(5.0, 5.0))(flat, target, rng)[0].astype(np.float64) - 128
    assert abs(noisy.mean()) < 0.1 and noisy.std() == pytest.approx(5.0, rel=0.03)


def test_colour_rotation_keeps_colour_distances_and_draws_uniform_turns():
    from pydetect.data.transforms import RandomColourRotation

    # Colours near mid-grey (nothing clips): every pair of pixels keeps its colour distance
    # (times the contrast factor), while the colour of the difference changes.
    rng = np.random.default_rng(3)
    img = rng.integers(96, 160, (30, 40, 3), dtype=np.uint8)
    _, target = _rect_image()
    pix = img.reshape(-1, 3).astype(np.float64)
    i, j = rng.integers(0, len(pix), (2, 500))
    before = np.linalg.norm(pix[i] - pix[j], axis=1)
    for g in (1.0, 0.5):
        out, tt = RandomColourRotation(p=1.0, contrast_range=(g, g))(img, target, rng)
        assert out.dtype == np.uint8 and out.shape == img.shape and tt is target
        q = out.reshape(-1, 3).astype(np.float64)
        after = np.linalg.norm(q[i] - q[j], axis=1)
        assert np.abs(after - g * before).max() <= 1.8  # rounding of two pixels to integers
        np.testing.assert_allclose(q.mean(axis=0), pix.mean(axis=0), atol=0.6)  # turned about the mean
    assert RandomColourRotation(p=0.0)(img, target, rng)[0] is img
    # Uniform on O(3): a fixed axis lands anywhere on the sphere (mean 0, second moment 1/3)
    # and half the maps are reflections. QR without the sign fix fails the first check: its
    # first column always points against the first axis.
    draws = np.stack([RandomColourRotation.random_orthogonal(rng) for _ in range(4000)])
    np.testing.assert_allclose(draws @ draws.transpose(0, 2, 1), np.broadcast_to(np.eye(3), draws.shape),
                               atol=1e-12)
    assert np.abs(draws.mean(axis=0)).max() < 0.04
    assert np.abs((draws ** 2).mean(axis=0) - 1 / 3).max() < 0.03
    assert abs((np.linalg.det(draws) < 0).mean() - 0.5) < 0.04
    with pytest.raises(ValueError, match="contrast_range"):
        RandomColourRotation(contrast_range=(1.0, 0.5))
    with pytest.raises(TypeError, match="contrast_range"):
        RandomColourRotation(contrast_range=0.5)


def test_detection_augmentation_is_reproducible_and_keeps_boxes_valid():
    from pydetect.data.transforms import detection_augmentation

    pipeline = detection_augmentation(hflip=True, invert=0.5, shear=0.2, recolour=0.5)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == ["RandomScale", "RandomHorizontalFlip", "RandomShear", "PhotometricJitter", "RandomInvert",
                     "RandomColourRotation", "RandomGrayscale", "RandomGaussianBlur", "RandomNoise"]
    assert detection_augmentation(colour=0, grey=0, blur=0, noise=0, scale_range=None).transforms == []
    img, target = _rect_image()
    a = [pipeline(img, target, np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0][0], a[1][0])
    np.testing.assert_array_equal(a[0][1]["boxes"], a[1][1]["boxes"])
    rng = np.random.default_rng(1)
    for _ in range(20):
        out, tt = pipeline(img, target, rng)
        h, w = out.shape[:2]
        b = tt["boxes"]
        assert out.dtype == np.uint8 and b.dtype == np.float32
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w + 1e-3).all() and (b[:, 2] > b[:, 0]).all()
    with pytest.raises(ValueError, match="invert"):
        detection_augmentation(invert=1.5)
