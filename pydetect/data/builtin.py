"""Built-in detection datasets made from data that installed packages ship (no downloads).

Each dataset has three splits, ``train``, ``val`` and ``test``, that share no object and no
background photo: recipes, defaults and time budgets are chosen on ``val``, and ``test`` is
evaluated once per published table.

``digits_in_clutter``
    scikit-learn's 1,797 handwritten digits (8x8, 10 classes) upscaled to 16-80 px with random
    contrast, colour and polarity, alpha-blended onto crops of natural photos; 1-6 digits per
    160-320 px image; two objects overlap by at most 15% of the smaller one's area. Digits are
    split by their index in ``load_digits()``: index % 5 == 0 is test (360 digits), index % 10
    == 1 is val (180), the rest train (1,257), so val and test digits are writing that training
    never sees (the data set carries no writer ids, so the split is by sample).
``faces_in_clutter``
    scikit-image's LFW subset (``data.lfw_subset()``: 100 faces then 100 non-faces, 25x25
    grey) scaled to 24-96 px onto photo backgrounds; 1-4 faces per image, and 0-3 non-face
    patches pasted the same way as unannotated distractors (so "a pasted square" is not a face
    cue). Faces 0-69 and non-faces 100-169 are train, 70-84 and 170-184 val, 85-99 and 185-199
    test (the subset carries no identity labels, so the split is by face image).

Backgrounds are random crops (with random scale and flip) of photos that show no people,
a different set per split (:func:`background_names`):

- train: scikit-learn's ``china`` and ``flower``; scikit-image's ``coffee``, ``chelsea``,
  ``brick``, ``grass``, ``moon``, ``coins``, ``cell``;
- val: ``rocket``, ``gravel``, ``retina``;
- test: ``hubble_deep_field``, the left image of ``stereo_motorcycle``, ``immunohistochemistry``.

Both are deterministic functions of ``(split, n_images, seed)``; image i depends only on
``(seed, split, i)``, so a smaller ``n_images`` gives a prefix of a larger one.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from skimage import data as skdata
from sklearn.datasets import load_digits, load_sample_image

from pydetect._validation import check_choice, check_int
from pydetect.data.dataset import DetectionDataset

__all__ = ["digits_in_clutter", "faces_in_clutter", "digit_indices", "face_indices", "background_names",
           "DEFAULT_N_IMAGES", "SPLITS"]

#: Default number of images per split (both datasets).
DEFAULT_N_IMAGES = {"train": 500, "val": 200, "test": 200}
#: Most images one call makes: the images are held in memory (about 0.2 MB each, 3.5 ms
#: to make), so more would exhaust memory rather than finish.
MAX_N_IMAGES = 100_000

_IMAGE_SIZE = (160, 320)      # image side range (px), inclusive
_DIGIT_SIZE = (16, 80)        # digit side range (px)
_FACE_SIZE = (24, 96)         # face side range (px)
_MAX_OVERLAP = 0.15           # limit on intersection / smaller area of two objects in one image
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "test": 1, "val": 2}
# Background photos per split: (package, name); sklearn's are load_sample_images() files.
_BACKGROUNDS = {
    "train": (("sklearn", "china.jpg"), ("sklearn", "flower.jpg"), ("skimage", "coffee"),
              ("skimage", "chelsea"), ("skimage", "brick"), ("skimage", "grass"), ("skimage", "moon"),
              ("skimage", "coins"), ("skimage", "cell")),
    "val": (("skimage", "rocket"), ("skimage", "gravel"), ("skimage", "retina")),
    "test": (("skimage", "hubble_deep_field"), ("skimage", "stereo_motorcycle"),
             ("skimage", "immunohistochemistry")),
}


def background_names(split: str) -> tuple:
    """The names of the background photos ``split`` draws from (no photo is in two splits)."""
    check_choice(split, "split", SPLITS)
    return tuple(name for _, name in _BACKGROUNDS[split])


def _load_photo(package: str, name: str) -> np.ndarray:
    if package == "sklearn":
        img = load_sample_image(name)
    else:
        img = getattr(skdata, name)()
        if name == "stereo_motorcycle":  # (left, right, disparity): the left view
            img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=None)
def _backgrounds(split: str):
    """The background photos of ``split`` as RGB uint8 arrays (cached)."""
    return tuple(_load_photo(package, name) for package, name in _BACKGROUNDS[split])


@functools.lru_cache(maxsize=1)
def _digits():
    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    return images, d.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _lfw():
    x = skdata.lfw_subset().astype(np.float32)  # (200, 25, 25) in [0, 1]
    x.setflags(write=False)
    return x


def _background(rng, split: str, h: int, w: int) -> np.ndarray:
    photos = _backgrounds(split)
    src = photos[rng.integers(len(photos))]
    ph, pw = src.shape[:2]
    # A crop of random scale (0.5-1.5 photo px per output px), resized to (h, w).
    scale = rng.uniform(0.5, 1.5)
    ch, cw = min(ph, max(8, int(round(h * scale)))), min(pw, max(8, int(round(w * scale))))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = src[y0:y0 + ch, x0:x0 + cw]
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _overlap(box, boxes) -> np.ndarray:
    """Intersection over the smaller area of ``box`` and each of ``boxes`` (>= their IoU)."""
    if len(boxes) == 0:
        return np.zeros(0)
    b = np.asarray(boxes, np.float64)
    iw = np.clip(np.minimum(box[2], b[:, 2]) - np.maximum(box[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], b[:, 3]) - np.maximum(box[1], b[:, 1]), 0, None)
    inter = iw * ih
    a = (box[2] - box[0]) * (box[3] - box[1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(np.minimum(a, ab), 1e-9)


def _place(rng, h, w, ph, pw, placed, max_overlap, tries=30):
    """A top-left corner for a (ph, pw) patch whose box covers at most max_overlap of any smaller box in ``placed`` (and vice versa)."""
    for _ in range(tries):
        y = int(rng.integers(0, h - ph + 1))
        x = int(rng.integers(0, w - pw + 1))
        box = (x, y, x + pw, y + ph)
        if len(placed) == 0 or _overlap(box, placed).max() <= max_overlap:
            return x, y
    return None


def _blend(img, x, y, alpha, color):
    """img[y:y+h, x:x+w] = (1 - alpha) * img + alpha * color, in place (alpha (h, w), color (3,) or (h, w, 3))."""
    h, w = alpha.shape
    region = img[y:y + h, x:x + w].astype(np.float32)
    a = alpha[:, :, None]
    region = region * (1.0 - a) + np.asarray(color, np.float32) * a
    img[y:y + h, x:x + w] = np.clip(np.rint(region), 0, 255).astype(np.uint8)


def _check_args(split, n_images, seed):
    check_choice(split, "split", SPLITS)
    if n_images is None:
        n_images = DEFAULT_N_IMAGES[split]
    n_images = check_int(n_images, "n_images", minimum=0, maximum=MAX_N_IMAGES)
    seed = check_int(seed, "seed", minimum=0)
    return split, n_images, seed


def _image_rng(dataset_code: int, split: str, seed: int, i: int):
    return np.random.default_rng([seed, dataset_code, _SPLIT_CODE[split], i])


def digits_in_clutter(split: str = "train", n_images: int | None = None, seed: int = 0) -> DetectionDataset:
    """Handwritten digits pasted on natural-photo clutter: a 10-class detection dataset.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Each split draws its own digits (:func:`digit_indices`: test the 360 whose index in
        ``sklearn.datasets.load_digits`` is a multiple of 5, val the 180 with index % 10 == 1,
        train the other 1,257) and its own background photos (:func:`background_names`).
    n_images : int, optional
        Number of images. Default 500 for train, 200 for val and test (``DEFAULT_N_IMAGES``); at
        most 100,000 (``MAX_N_IMAGES``).
    seed : int
        Image i is a deterministic function of ``(seed, split, i)``.

    Returns
    -------
    DetectionDataset
        RGB uint8 images of 160-320 px per side, each with 1-6 digits of 16-80 px
        (any two overlap by at most 15% of the smaller one); ``class_names`` are ``"0"`` .. ``"9"``. A box is the
        extent of the digit's ink (its non-zero 8x8 cells, scaled); see
        :func:`digit_indices` for the digits each split draws from.

    Examples
    --------
    >>> ds = digits_in_clutter("test", n_images=4, seed=1)
    >>> image, target = ds[0]
    >>> image.dtype, target["boxes"].shape[1]
    (dtype('uint8'), 4)
    """
    split, n_images, seed = _check_args(split, n_images, seed)
    digits, labels = _digits()
    pool = digit_indices(split)
    images, targets = [], []
    for i in range(n_images):
        rng = _image_rng(1, split, seed, i)
        h, w = (int(v) for v in rng.integers(_IMAGE_SIZE[0], _IMAGE_SIZE[1] + 1, size=2))
        img = _background(rng, split, h, w)
        boxes, labs = [], []
        for _ in range(int(rng.integers(1, 7))):
            idx = int(pool[rng.integers(len(pool))])
            s = int(rng.integers(_DIGIT_SIZE[0], _DIGIT_SIZE[1] + 1))
            # Slight aspect jitter: width s, height s * [0.9, 1.25] (digits are taller than wide).
            sh = min(h, int(round(s * rng.uniform(0.9, 1.25))))
            sw = min(w, s)
            d = digits[idx]
            rows = np.flatnonzero(d.max(axis=1) > 0)
            cols = np.flatnonzero(d.max(axis=0) > 0)
            ink = (cols[0] * sw / 8.0, rows[0] * sh / 8.0, (cols[-1] + 1) * sw / 8.0, (rows[-1] + 1) * sh / 8.0)
            pos = None
            for _ in range(30):  # place so that the *ink* boxes overlap little
                y = int(rng.integers(0, h - sh + 1))
                x = int(rng.integers(0, w - sw + 1))
                cand = (x + ink[0], y + ink[1], x + ink[2], y + ink[3])
                if not boxes or _overlap(cand, boxes).max() <= _MAX_OVERLAP:
                    pos = (x, y)
                    break
            if pos is None:
                continue
            x, y = pos
            alpha = cv2.resize(d, (sw, sh), interpolation=cv2.INTER_LINEAR)
            opacity = rng.uniform(0.55, 1.0)            # contrast
            local = img[y:y + sh, x:x + sw].reshape(-1, 3).mean(axis=0)
            dark = local * rng.uniform(0.0, 0.35)
            bright = local + (255.0 - local) * rng.uniform(0.65, 1.0)
            # Polarity: dark or bright ink at random, unless that one would barely show.
            first, second = (dark, bright) if rng.random() < 0.5 else (bright, dark)
            color = first if np.abs(first - local).mean() >= 60 else second
            color = np.clip(color + rng.normal(0, 20, size=3), 0, 255)  # a little hue
            _blend(img, x, y, np.clip(alpha * opacity, 0, 1), color)
            boxes.append((x + ink[0], y + ink[1], x + ink[2], y + ink[3]))
            labs.append(int(labels[idx]))
        images.append(img)
        targets.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                        "labels": np.asarray(labs, np.int64)})
    return DetectionDataset(images, targets, [str(c) for c in range(10)])


def digit_indices(split: str) -> np.ndarray:
    """Indices into ``sklearn.datasets.load_digits()`` that ``digits_in_clutter(split)`` draws from.

    test: index % 5 == 0 (360 digits); val: index % 10 == 1 (180); train: the other 1,257.
    """
    check_choice(split, "split", SPLITS)
    idx = np.arange(1797)
    test, val = idx % 5 == 0, idx % 10 == 1
    return idx[{"test": test, "val": val, "train": ~(test | val)}[split]]


def face_indices(split: str) -> tuple:
    """(face indices, non-face indices) into ``skimage.data.lfw_subset()`` for ``faces_in_clutter(split)``.

    train: faces 0-69, non-faces 100-169; val: 70-84 and 170-184; test: 85-99 and 185-199.
    """
    check_choice(split, "split", SPLITS)
    start, stop = {"train": (0, 70), "val": (70, 85), "test": (85, 100)}[split]
    return np.arange(start, stop), np.arange(100 + start, 100 + stop)


def faces_in_clutter(split: str = "train", n_images: int | None = None, seed: int = 0) -> DetectionDataset:
    """LFW faces pasted on natural-photo clutter with non-face distractors: a 1-class dataset.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Each split draws its own faces and non-faces from ``skimage.data.lfw_subset()``
        (:func:`face_indices`: train 0-69, val 70-84, test 85-99, non-faces 100 later) and its
        own background photos (:func:`background_names`).
    n_images : int, optional
        Number of images. Default 500 for train, 200 for val and test (``DEFAULT_N_IMAGES``); at
        most 100,000 (``MAX_N_IMAGES``).
    seed : int
        Image i is a deterministic function of ``(seed, split, i)``.

    Returns
    -------
    DetectionDataset
        RGB uint8 images of 160-320 px per side, each with 1-4 square faces of 24-96 px
        (the box is the pasted 25x25 patch, scaled) and 0-3 unannotated non-face patches
        of the same sizes; objects and distractors overlap by at most 15% of the smaller one's area.
        ``class_names == ["face"]``.
    """
    split, n_images, seed = _check_args(split, n_images, seed)
    lfw = _lfw()
    faces, nonfaces = face_indices(split)
    images, targets = [], []
    for i in range(n_images):
        rng = _image_rng(2, split, seed, i)
        h, w = (int(v) for v in rng.integers(_IMAGE_SIZE[0], _IMAGE_SIZE[1] + 1, size=2))
        img = _background(rng, split, h, w)
        n_faces = int(rng.integers(1, 5))
        n_distract = int(rng.integers(0, 4))
        kinds = [True] * n_faces + [False] * n_distract  # faces first: the first always fits
        placed, boxes = [], []
        for is_face in kinds:
            pool = faces if is_face else nonfaces
            idx = int(pool[rng.integers(len(pool))])
            s = min(h, w, int(rng.integers(_FACE_SIZE[0], _FACE_SIZE[1] + 1)))
            pos = _place(rng, h, w, s, s, placed, _MAX_OVERLAP)
            if pos is None:
                continue
            x, y = pos
            patch = cv2.resize(lfw[idx], (s, s), interpolation=cv2.INTER_LINEAR if s > 25 else cv2.INTER_AREA)
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            # Random gain/offset (contrast, brightness), tinted grey.
            gain = rng.uniform(0.6, 1.2)
            offset = rng.uniform(-0.15, 0.15)
            grey = np.clip(patch * gain + offset + (1 - gain) * 0.5, 0, 1) * 255.0
            tint = rng.uniform(0.85, 1.15, size=3)
            colour = np.clip(grey[:, :, None] * tint, 0, 255)
            _blend(img, x, y, np.ones((s, s), np.float32), colour)
            placed.append((x, y, x + s, y + s))
            if is_face:
                boxes.append((x, y, x + s, y + s))
        images.append(img)
        targets.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                        "labels": np.zeros(len(boxes), np.int64)})
    return DetectionDataset(images, targets, ["face"])
