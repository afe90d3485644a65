import numpy as np
import pytest

from pydetect import data

pytest.importorskip("sklearn", reason="digits and sample images come from scikit-learn")
pytest.importorskip("skimage", reason="photos and LFW faces come from scikit-image")


def _check_valid(ds, n_classes, size_range):
    assert len(ds.class_names) == n_classes
    for img, t in ds:
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert size_range[0] <= h <= size_range[1] and size_range[0] <= w <= size_range[1]
        b = t["boxes"]
        assert len(b) >= 1
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert ((t["labels"] >= 0) & (t["labels"] < n_classes)).all()


@pytest.mark.parametrize("make", [data.digits_in_clutter, data.faces_in_clutter])
def test_deterministic_and_prefix(make):
    a = make("train", n_images=6, seed=3)
    b = make("train", n_images=6, seed=3)
    c = make("train", n_images=3, seed=3)
    d = make("train", n_images=6, seed=4)
    e = make("test", n_images=6, seed=3)
    for i in range(6):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1]["boxes"], b[i][1]["boxes"])
    for i in range(3):
        np.testing.assert_array_equal(a[i][0], c[i][0])
    assert any(a[i][0].shape != d[i][0].shape or not np.array_equal(a[i][0], d[i][0]) for i in range(6))
    assert any(a[i][0].shape != e[i][0].shape or not np.array_equal(a[i][0], e[i][0]) for i in range(6))


def test_digits_valid_and_sizes():
    ds = data.digits_in_clutter("train", n_images=40, seed=0)
    _check_valid(ds, 10, (160, 320))
    counts = [len(t["boxes"]) for t in ds.targets]
    assert 1 <= min(counts) and max(counts) <= 6 and len(set(counts)) > 2
    sides = np.concatenate([np.maximum(t["boxes"][:, 2] - t["boxes"][:, 0], t["boxes"][:, 3] - t["boxes"][:, 1])
                            for t in ds.targets])
    assert sides.max() <= 80 * 1.25 + 1e-3 and sides.min() >= 16 / 8  # ink boxes within the digit square
    assert len(np.unique(np.concatenate([t["labels"] for t in ds.targets]))) == 10


def test_digits_split_disjoint():
    tr, te = data.digit_indices("train"), data.digit_indices("test")
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 1797
    assert (te % 5 == 0).all() and (tr % 5 != 0).all()


def test_digits_splits_draw_only_from_their_pool(monkeypatch):
    # Relabel every digit by its pool (1 if index % 5 == 0 else 0): test images must then
    # hold only label 1, train images only label 0.
    from pydetect.data import builtin

    images, _ = builtin._digits()
    marker = (np.arange(len(images)) % 5 == 0).astype(np.int64)
    monkeypatch.setattr(builtin, "_digits", lambda: (images, marker))
    te = builtin.digits_in_clutter("test", n_images=20, seed=0)
    tr = builtin.digits_in_clutter("train", n_images=20, seed=0)
    assert np.concatenate([t["labels"] for t in te.targets]).tolist() == [1] * te.n_objects
    assert np.concatenate([t["labels"] for t in tr.targets]).tolist() == [0] * tr.n_objects


def test_faces_valid_and_split():
    ds = data.faces_in_clutter("test", n_images=30, seed=0)
    _check_valid(ds, 1, (160, 320))
    assert ds.class_names == ["face"]
    for t in ds.targets:
        b = t["boxes"]
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        np.testing.assert_array_equal(w, h)
        assert (w >= 24).all() and (w <= 96).all() and len(b) <= 4
    ftr, ntr = data.face_indices("train")
    fte, nte = data.face_indices("test")
    assert set(ftr) == set(range(80)) and set(fte) == set(range(80, 100))
    assert not set(ntr) & set(nte) and min(ntr.min(), nte.min()) >= 100


def test_faces_test_split_uses_only_test_faces():
    # Every pasted face in a test image, resized back to 25x25, must be closest to a test face.
    cv2 = pytest.importorskip("cv2", reason="resizing patches")
    from skimage.data import lfw_subset

    lfw = lfw_subset()[:100].astype(np.float32)
    ds = data.faces_in_clutter("test", n_images=8, seed=1)
    for img, t in ds:
        for x1, y1, x2, y2 in t["boxes"].astype(int):
            patch = img[y1:y2, x1:x2].mean(axis=2).astype(np.float32)
            small = cv2.resize(patch, (25, 25), interpolation=cv2.INTER_AREA)
            small = (small - small.mean()) / (small.std() + 1e-6)
            best = []
            for flip in (False, True):
                ref = lfw[:, :, ::-1] if flip else lfw
                z = (ref - ref.mean(axis=(1, 2), keepdims=True)) / (ref.std(axis=(1, 2), keepdims=True) + 1e-6)
                best.append(((z * small).mean(axis=(1, 2))))
            corr = np.maximum(*best)
            assert int(np.argmax(corr)) >= 80


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        data.digits_in_clutter("val")
    with pytest.raises(ValueError, match="n_images"):
        data.faces_in_clutter("train", n_images=-1)
    with pytest.raises(TypeError, match="seed"):
        data.digits_in_clutter("train", n_images=1, seed=1.5)
    assert len(data.digits_in_clutter("test", n_images=0)) == 0
