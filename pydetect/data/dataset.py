"""DetectionDataset: images with their boxes and labels, as a sequence of ``(image, target)``.

A target is a dict of equal-length arrays describing the K objects of one image:

``boxes``      (K, 4) float32, ``(x1, y1, x2, y2)`` in pixels (no +1: ``x2 - x1`` is the width)
``labels``     (K,) int64, indices into ``class_names`` (0-based)
``iscrowd``    (K,) bool, COCO crowd regions (ignored by evaluation, never false negatives)
``difficult``  (K,) bool, VOC "difficult" objects (ignored by VOC evaluation)
``area``       (K,) float64, optional: the object area COCO evaluation uses for its size
               ranges (COCO ground truth stores the segmentation area); default: box area.

Images are numpy arrays (kept in memory) or file paths (read with OpenCV when indexed);
either way an indexed image comes back as an RGB (H, W, 3) uint8 array.
"""

from __future__ import annotations

import io
import os
import warnings

import cv2
import numpy as np
from PIL import Image

from pydetect._validation import (as_boxes, as_float_array, as_image, as_int64, check_image_size, check_int,
                                  check_size, max_image_pixels, to_numpy)

__all__ = ["DetectionDataset", "read_image"]


def _check_header_size(buf: np.ndarray, path: str) -> None:
    """Refuses an image whose header claims more than ``max_image_pixels()`` pixels, before
    anything is decoded. Formats Pillow does not know are left to OpenCV's own limits."""
    name = f"image file {path}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(buf.tobytes())) as im:  # reads the header only
                width, height = im.size
    except Image.DecompressionBombError:
        # Pillow refuses more than 2 * Image.MAX_IMAGE_PIXELS pixels without telling the size.
        limit, cap = Image.MAX_IMAGE_PIXELS, max_image_pixels()
        if limit and 2 * limit >= cap:
            raise ValueError(f"{name} has more than {2 * limit} pixels, over the limit of {cap} pixels "
                             "(set PYDETECT_MAX_IMAGE_PIXELS to raise it)") from None
        return
    except Exception:  # not a format Pillow knows, or a corrupt header: OpenCV decides
        return
    check_image_size(height, width, name)


def read_image(path) -> np.ndarray:
    """Reads an image file with OpenCV and returns it as RGB (H, W, 3) uint8.

    Grey images are replicated to three channels; an alpha channel is dropped. The size is
    read from the file's header first: images of more than ``PYDETECT_MAX_IMAGE_PIXELS``
    pixels (default 2**27) are refused before any pixel memory is allocated.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the path is not a regular file, the file is empty, too large or cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"image file {path} is not a regular file")
    # imdecode (not imread) so that non-ASCII paths work everywhere.
    buf = np.fromfile(path, dtype=np.uint8)
    if buf.size == 0:
        raise ValueError(f"image file {path} is empty")
    _check_header_size(buf, path)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits, e.g. on the image size
        reason = str(exc).strip().splitlines()[0].partition(" error: ")[2] or str(exc).strip()
        raise ValueError(f"cannot decode image file {path} ({reason})") from None
    if img is None:
        raise ValueError(f"cannot decode image file {path}: not an image, or a corrupt or truncated one")
    return np.ascontiguousarray(img[:, :, ::-1])


def _to_rgb(image, name: str) -> np.ndarray:
    img = as_image(image, name)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def _as_flags(value, k: int, name: str) -> np.ndarray:
    arr, _ = to_numpy(value, name)
    if arr.dtype.kind not in "biu" and not (arr.dtype.kind == "f" and arr.size == 0):
        raise TypeError(f"{name} must hold booleans, got dtype {arr.dtype}")
    arr = np.asarray(arr).reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1 or arr.shape[0] != k:
        raise ValueError(f"{name} must have shape ({k},) to match the boxes, got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr.astype(bool))


def _check_target(target, i: int, n_classes: int) -> dict:
    where = f"targets[{i}]"
    if not isinstance(target, dict):
        raise TypeError(f"{where} must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
    for key in ("boxes", "labels"):
        if key not in target:
            raise ValueError(f"{where} has no {key!r} entry")
    boxes, _ = as_boxes(target["boxes"], f"{where}['boxes']", dtype=np.float32)
    k = boxes.shape[0]
    lab, _ = to_numpy(target["labels"], f"{where}['labels']")
    if lab.dtype.kind not in "iu" and not (lab.dtype.kind == "f" and lab.size == 0):
        raise TypeError(f"{where}['labels'] must hold integers, got dtype {lab.dtype}")
    lab = as_int64(lab, f"{where}['labels']")
    lab = lab.reshape(-1) if lab.size == 0 else lab
    if lab.ndim != 1 or lab.shape[0] != k:
        raise ValueError(f"{where}['labels'] must have shape ({k},) to match the boxes, got {tuple(lab.shape)}")
    if k and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"{where}['labels'] must lie in [0, {n_classes}) (indices into class_names), "
                         f"got values in [{lab.min()}, {lab.max()}]")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}['boxes'][{j}] = {boxes[j].tolist()} has x2 < x1 or y2 < y1 "
                         "(boxes are (x1, y1, x2, y2))")
    out = {"boxes": boxes.copy(), "labels": lab.copy()}
    for key in ("iscrowd", "difficult"):
        out[key] = _as_flags(target[key], k, f"{where}[{key!r}]") if key in target else np.zeros(k, bool)
    if "area" in target and target["area"] is not None:
        area, _ = as_float_array(target["area"], f"{where}['area']", dtype=np.float64)
        area = area.reshape(-1) if area.size == 0 else area
        if area.shape != (k,):
            raise ValueError(f"{where}['area'] must have shape ({k},), got {tuple(area.shape)}")
        if k and area.min() < 0:
            raise ValueError(f"{where}['area'] must be >= 0, got {area.min()}")
        out["area"] = area.copy()
    return out


def _as_list(values, name: str) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence, got {type(values).__name__}")
    return list(values)


def _as_ids(values, name: str) -> list:
    """COCO ids: integers in [0, 2**63)."""
    return [check_int(v, f"{name}[{i}]", minimum=0) for i, v in enumerate(_as_list(values, name))]


def _clip_target(target: dict, h: int, w: int, where: str) -> dict:
    b = target["boxes"]
    if b.shape[0] == 0:
        return target
    outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
    if outside.any():
        warnings.warn(f"{where}: {int(outside.sum())} box(es) extend outside the {w}x{h} image "
                      "and were clipped to it", stacklevel=4)
        b = b.copy()
        np.clip(b[:, 0::2], 0, w, out=b[:, 0::2])
        np.clip(b[:, 1::2], 0, h, out=b[:, 1::2])
        target = dict(target, boxes=b)
    return target


class DetectionDataset:
    """A sequence of ``(image, target)`` pairs for training and evaluating detectors.

    Parameters
    ----------
    images : sequence of arrays or paths
        Each an (H, W) or (H, W, 3) RGB image (uint8, or float in [0, 1]), or the path of an
        image file that is read with OpenCV when indexed. Returned images are RGB uint8.
    targets : sequence of dict
        One per image: ``"boxes"`` (K, 4) xyxy and ``"labels"`` (K,) integers indexing
        ``class_names``; optional ``"iscrowd"``, ``"difficult"`` (K,) bool and ``"area"`` (K,).
        Boxes outside an in-memory image are clipped to it with a warning (for image paths
        this happens when the image is read).
    class_names : sequence of str
        Class names; label ``i`` is ``class_names[i]``.
    image_ids : sequence of int, optional
        Ids used in COCO files and evaluation. Default: ``0 .. N-1``.
    image_sizes : sequence of (H, W), optional
        Sizes of path images, when known (e.g. from a COCO file), so that evaluation and
        export need not decode the images.
    category_ids : sequence of int, optional
        COCO category id of each class, used in COCO files and results. Default:
        ``1 .. len(class_names)``.

    Examples
    --------
    >>> import numpy as np
    >>> ds = DetectionDataset([np.zeros((20, 30, 3), np.uint8)],
    ...                       [{"boxes": [[1, 2, 10, 12]], "labels": [0]}], ["cat"])
    >>> image, target = ds[0]
    >>> image.shape, target["boxes"].shape
    ((20, 30, 3), (1, 4))
    """

    def __init__(self, images, targets, class_names, *, image_ids=None, image_sizes=None, category_ids=None):
        images = _as_list(images, "images")
        targets = _as_list(targets, "targets")
        if isinstance(class_names, str):
            raise TypeError("class_names must be a sequence of strings, got a single string")
        class_names = [str(c) for c in _as_list(class_names, "class_names")]
        if not class_names:
            raise ValueError("class_names must not be empty")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be unique, got {class_names}")
        if category_ids is None:
            category_ids = list(range(1, len(class_names) + 1))
        else:
            category_ids = _as_ids(category_ids, "category_ids")
            if len(category_ids) != len(class_names) or len(set(category_ids)) != len(category_ids):
                raise ValueError(f"category_ids must be {len(class_names)} unique integers (one per class), "
                                 f"got {category_ids}")
        if len(images) != len(targets):
            raise ValueError(f"images and targets must have the same length, got {len(images)} and {len(targets)}")
        n = len(images)
        if image_ids is None:
            image_ids = list(range(n))
        else:
            image_ids = _as_ids(image_ids, "image_ids")
            if len(image_ids) != n:
                raise ValueError(f"image_ids must have {n} entries, got {len(image_ids)}")
            if len(set(image_ids)) != n:
                raise ValueError("image_ids must be unique")
        sizes = [None] * n if image_sizes is None else [
            None if s is None else check_size(s, f"image_sizes[{i}]")
            for i, s in enumerate(_as_list(image_sizes, "image_sizes"))]
        if len(sizes) != n:
            raise ValueError(f"image_sizes must have {n} entries, got {len(sizes)}")

        self._images = []
        self._targets = []
        for i, (img, tgt) in enumerate(zip(images, targets)):
            tgt = _check_target(tgt, i, len(class_names))
            if isinstance(img, (str, os.PathLike)):
                self._images.append(os.fspath(img))
                if sizes[i] is not None:
                    tgt = _clip_target(tgt, sizes[i][0], sizes[i][1], f"targets[{i}]")
            else:
                img = _to_rgb(img, f"images[{i}]")
                self._images.append(img)
                sizes[i] = img.shape[:2]
                tgt = _clip_target(tgt, img.shape[0], img.shape[1], f"targets[{i}]")
            self._targets.append(tgt)
        self._sizes = sizes
        self.class_names = class_names
        self.category_ids = category_ids
        self.image_ids = image_ids

    # Sequence protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i):
        """Returns ``(image, target)``: RGB uint8 (H, W, 3) and a dict of copied arrays."""
        if isinstance(i, slice):
            return self.subset(range(*i.indices(len(self))))
        i = self._index(i)
        img = self.load_image(i)
        tgt = self._targets[i]
        if self._sizes[i] is None:  # a path image seen for the first time
            self._sizes[i] = img.shape[:2]
            tgt = self._targets[i] = _clip_target(tgt, img.shape[0], img.shape[1], f"targets[{i}]")
        return img, {k: v.copy() for k, v in tgt.items()}

    def _index(self, i, name: str = "index") -> int:
        """``i`` as a position in [0, len), negative ones counting from the end."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{name} {i} out of range for a dataset of {n} images")
        return int(i) % n

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (f"DetectionDataset(n_images={len(self)}, n_objects={self.n_objects}, "
                f"class_names={self.class_names})")

    # Access without decoding images ---------------------------------------------------
    def load_image(self, i: int) -> np.ndarray:
        """The i-th image as RGB uint8 (H, W, 3) (read from disk for a path image)."""
        i = self._index(i)
        img = self._images[i]
        if isinstance(img, str):
            path, img = img, read_image(img)
            if self._sizes[i] is not None and tuple(img.shape[:2]) != tuple(self._sizes[i]):
                raise ValueError(f"image file {path} has size {img.shape[:2]}, expected {self._sizes[i]}")
            return img
        return img.copy()

    def target(self, i: int) -> dict:
        """The i-th target (copies), without reading the image."""
        return {k: v.copy() for k, v in self._targets[self._index(i)].items()}

    @property
    def targets(self) -> list:
        """All targets (the stored arrays: do not modify them)."""
        return list(self._targets)

    def image_path(self, i: int):
        """The file path of image i, or None for an in-memory image."""
        img = self._images[self._index(i)]
        return img if isinstance(img, str) else None

    def image_size(self, i: int) -> tuple:
        """(H, W) of image i (reads the image once if it is a path of unknown size)."""
        i = self._index(i)
        if self._sizes[i] is None:
            self[i]
        return tuple(self._sizes[i])

    @property
    def n_objects(self) -> int:
        return int(sum(t["boxes"].shape[0] for t in self._targets))

    def subset(self, indices) -> "DetectionDataset":
        """A new dataset with the images at ``indices`` (keeps their image ids)."""
        indices = [self._index(i, f"indices[{j}]") for j, i in enumerate(_as_list(indices, "indices"))]
        ds = DetectionDataset.__new__(DetectionDataset)
        ds._images = [self._images[i] for i in indices]
        ds._targets = [self._targets[i] for i in indices]
        ds._sizes = [self._sizes[i] for i in indices]
        ds.class_names = list(self.class_names)
        ds.category_ids = list(self.category_ids)
        ds.image_ids = [self.image_ids[i] for i in indices]
        return ds
