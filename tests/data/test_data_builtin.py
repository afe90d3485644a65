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
    tr, va, te = (data.digit_indices(s) for s in ("train", "val", "test"))
    assert len(np.intersect1d(tr, te)) == len(np.intersect1d(tr, va)) == len(np.intersect1d(va, te)) == 0
    assert len(tr) + len(va) + len(te) == 1797
    assert (te % 5 == 0).all() and (va % 10 == 1).all() and (tr % 5 != 0).all() and (tr % 10 != 1).all()


def test_digits_splits_draw_only_from_their_pool(monkeypatch):
    # Relabel every digit by its pool (0 train, 1 val, 2 test): each split's images must then
    # hold only its own label.
    from pydetect.data import builtin

    images, _ = builtin._digits()
    marker = np.zeros(len(images), np.int64)
    marker[data.digit_indices("val")] = 1
    marker[data.digit_indices("test")] = 2
    monkeypatch.setattr(builtin, "_digits", lambda: (images, marker))
    for code, split in enumerate(("train", "val", "test")):
        ds = builtin.digits_in_clutter(split, n_images=20, seed=0)
        assert np.concatenate([t["labels"] for t in ds.targets]).tolist() == [code] * ds.n_objects


def test_background_photos_disjoint_and_used(monkeypatch):
    # No photo is in two splits; each split's images are crops of its own photos only: with
    # every photo replaced by a constant image of its split's grey level, the background (most
    # of each image's pixels) must show that level.
    from pydetect.data import builtin

    names = {s: set(data.background_names(s)) for s in builtin.SPLITS}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    level = {"train": 30, "val": 130, "test": 230}
    monkeypatch.setattr(builtin, "_backgrounds", lambda split: tuple(
        np.full((400, 400, 3), level[split], np.uint8) for _ in data.background_names(split)))
    for split in builtin.SPLITS:
        for make in (builtin.digits_in_clutter, builtin.faces_in_clutter):
            for img, _ in make(split, n_images=3, seed=0):
                values, counts = np.unique(img, return_counts=True)
                assert values[np.argmax(counts)] == level[split]


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
    fva, nva = data.face_indices("val")
    fte, nte = data.face_indices("test")
    assert set(ftr) == set(range(70)) and set(fva) == set(range(70, 85)) and set(fte) == set(range(85, 100))
    assert not set(ntr) & set(nte) and not set(ntr) & set(nva) and not set(nva) & set(nte)
    assert min(ntr.min(), nva.min(), nte.min()) >= 100


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_faces_split_uses_only_its_faces(monkeypatch, split):
    # Give the split's own faces a left-dark/right-bright pattern and every other face and
    # non-face a flat grey: every annotated box must then show the pattern (either way round,
    # since faces are flipped at random), whatever gain, offset and tint the pasting applies.
    from pydetect.data import builtin

    lfw = np.full((200, 25, 25), 0.5, np.float32)
    own = data.face_indices(split)[0]
    lfw[own, :, :12] = 0.0
    lfw[own, :, 13:] = 1.0
    monkeypatch.setattr(builtin, "_lfw", lambda: lfw)
    ds = builtin.faces_in_clutter(split, n_images=8, seed=1)
    assert ds.n_objects > 8
    for img, t in ds:
        for x1, y1, x2, y2 in t["boxes"].astype(int):
            patch = img[y1:y2, x1:x2].astype(np.float32).mean(axis=2)
            third = (x2 - x1) // 3
            assert abs(patch[:, :third].mean() - patch[:, -third:].mean()) > 50


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        data.digits_in_clutter("validation")
    with pytest.raises(ValueError, match="n_images"):
        data.faces_in_clutter("train", n_images=-1)
    with pytest.raises(TypeError, match="seed"):
        data.digits_in_clutter("train", n_images=1, seed=1.5)
    assert len(data.digits_in_clutter("test", n_images=0)) == 0
