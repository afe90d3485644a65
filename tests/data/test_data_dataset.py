import os
import warnings

import numpy as np
import pytest

from pydetect.data import DetectionDataset, read_image


def _img(h=20, w=30, c=3, value=7):
    return np.full((h, w, c), value, np.uint8) if c else np.full((h, w), value, np.uint8)


def test_basic_sequence_and_types():
    ds = DetectionDataset([_img(), _img(c=0)],
                          [{"boxes": [[1, 2, 10, 12]], "labels": [1]}, {"boxes": np.zeros((0, 4)), "labels": []}],
                          ["a", "b"])
    assert len(ds) == 2 and ds.n_objects == 1
    img, t = ds[1]
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8  # grey replicated to RGB
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == np.float32
    assert t["labels"].dtype == np.int64 and t["iscrowd"].dtype == bool and t["difficult"].shape == (0,)
    img, t = ds[0]
    np.testing.assert_array_equal(t["boxes"], [[1, 2, 10, 12]])
    t["boxes"][:] = 0  # returned arrays are copies
    assert ds[0][1]["boxes"][0, 2] == 10
    assert [len(t["boxes"]) for _, t in ds] == [1, 0]
    assert ds.image_ids == [0, 1] and ds.image_size(0) == (20, 30)
    sub = ds[1:]
    assert len(sub) == 1 and sub.image_ids == [1]
    with pytest.raises(IndexError):
        ds[2]


def test_float_image_and_flags():
    ds = DetectionDataset([np.zeros((5, 6, 3), np.float64) + 0.5],
                          [{"boxes": [[0, 0, 2, 2], [1, 1, 3, 3]], "labels": [0, 0], "iscrowd": [0, 1],
                            "difficult": np.array([True, False])}], ["x"])
    img, t = ds[0]
    assert img.dtype == np.uint8 and img[0, 0, 0] == 128
    assert t["iscrowd"].tolist() == [False, True] and t["difficult"].tolist() == [True, False]


@pytest.mark.parametrize("target, exc, msg", [
    ({"boxes": [[0, 0, 1, 1]]}, ValueError, "'labels'"),
    ({"boxes": [[0, 0, 1]], "labels": [0]}, ValueError, "shape"),
    ({"boxes": [[0, 0, 1, 1]], "labels": [0, 1]}, ValueError, "labels"),
    ({"boxes": [[0, 0, 1, 1]], "labels": [2]}, ValueError, "class_names"),
    ({"boxes": [[0, 0, 1, 1]], "labels": [-1]}, ValueError, "class_names"),
    ({"boxes": [[5, 0, 1, 1]], "labels": [0]}, ValueError, "x2 < x1"),
    ({"boxes": [[0, 0, np.nan, 1]], "labels": [0]}, ValueError, "finite"),
    ({"boxes": [[0, 0, 1, 1]], "labels": [0.5]}, TypeError, "integers"),
    ({"boxes": [[0, 0, 1, 1]], "labels": [0], "iscrowd": [0, 0]}, ValueError, "iscrowd"),
    ([[0, 0, 1, 1]], TypeError, "dict"),
])
def test_bad_targets(target, exc, msg):
    with pytest.raises(exc, match=msg):
        DetectionDataset([_img()], [target], ["a", "b"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        DetectionDataset([_img()], [], ["a"])
    with pytest.raises(ValueError, match="unique"):
        DetectionDataset([], [], ["a", "a"])
    with pytest.raises(TypeError, match="class_names"):
        DetectionDataset([], [], "abc")
    with pytest.raises(ValueError, match="images\\[0\\]"):
        DetectionDataset([np.zeros((4, 4, 2), np.uint8)], [{"boxes": [], "labels": []}], ["a"])


def test_boxes_outside_are_clipped_with_warning():
    with pytest.warns(UserWarning, match="clipped"):
        ds = DetectionDataset([_img(20, 30)], [{"boxes": [[-5, 2, 40, 25], [1, 1, 2, 2]], "labels": [0, 0]}], ["a"])
    np.testing.assert_array_equal(ds[0][1]["boxes"], [[0, 2, 30, 20], [1, 1, 2, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DetectionDataset([_img(20, 30)], [{"boxes": [[0, 0, 30, 20]], "labels": [0]}], ["a"])


def test_path_images_read_rgb(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="writes the test image")
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = tmp_path / "im.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    np.testing.assert_array_equal(read_image(path), rgb)
    ds = DetectionDataset([path], [{"boxes": [[0, 0, 20, 5]], "labels": [0]}], ["a"])
    assert ds.image_path(0) == os.fspath(path)
    with pytest.warns(UserWarning, match="clipped"):
        img, t = ds[0]
    np.testing.assert_array_equal(img, rgb)
    np.testing.assert_array_equal(t["boxes"], [[0, 0, 16, 5]])
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="decode"):
        read_image(tmp_path / "bad.png")
