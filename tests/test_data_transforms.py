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
