"""Training transforms that move the boxes with the pixels.

Each transform is a callable ``t(image, target) -> (image, target)`` on an RGB uint8
(H, W, 3) image and a target dict (``boxes`` (K, 4) xyxy, ``labels`` and any other
per-object arrays, which are filtered together when objects are dropped). Random
transforms draw from their own ``numpy.random.Generator`` (``seed`` argument), so a
pipeline is reproducible. :class:`TransformedDataset` applies a pipeline on indexing.
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import check_fraction, check_image_size, check_int, check_positive, check_size

__all__ = ["Compose", "Resize", "RandomHorizontalFlip", "RandomCrop", "PhotometricJitter", "TransformedDataset"]


def _rng(seed):
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_int(seed, "seed", minimum=0))


def _filter(target: dict, keep: np.ndarray) -> dict:
    k = target["boxes"].shape[0]
    return {key: (v[keep] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == k else v)
            for key, v in target.items()}


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable (image, target) -> (image, target), "
                                f"got {type(t).__name__}")

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        return f"Compose({self.transforms})"


class Resize:
    """Resizes the image (bilinear) and scales the boxes (and ``area``).

    Parameters
    ----------
    size : int or (H, W), optional
        Exact output size (an int gives a square).
    min_size, max_size : int, optional
        Otherwise: scale so the shorter side is ``min_size`` unless the longer side would
        exceed ``max_size`` (torchvision's GeneralizedRCNNTransform rule).

    Output sizes of more than ``PYDETECT_MAX_IMAGE_PIXELS`` pixels (default 2**27) raise
    ``ValueError``.
    """

    def __init__(self, size=None, *, min_size=None, max_size=None):
        if (size is None) == (min_size is None and max_size is None):
            raise ValueError("give either size=(H, W) or min_size / max_size")
        if size is not None:
            size = check_size(size, "size")
            check_image_size(size[0], size[1], "size")
        self.size = size
        self.min_size = None if min_size is None else check_int(min_size, "min_size", minimum=1)
        self.max_size = None if max_size is None else check_int(max_size, "max_size", minimum=1)

    def output_size(self, h: int, w: int) -> tuple:
        if self.size is not None:
            return self.size
        scale = float("inf")
        if self.min_size is not None:
            scale = self.min_size / min(h, w)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(h, w))
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def __call__(self, image, target):
        import cv2

        h, w = image.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
        oh, ow = self.output_size(h, w)
        if (oh, ow) == (h, w):
            return image, target
        # min_size scales a thin image's long side up without bound: refuse before allocating.
        check_image_size(oh, ow, f"the resized {w}x{h} image")
        out = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA if oh * ow < h * w else cv2.INTER_LINEAR)
        sx, sy = ow / w, oh / h
        target = dict(target)
        target["boxes"] = (target["boxes"] * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
        if "area" in target:
            target["area"] = target["area"] * (sx * sy)
        return out, target

    def __repr__(self):
        return f"Resize(size={self.size}, min_size={self.min_size}, max_size={self.max_size})"


class RandomHorizontalFlip:
    """Mirrors the image left-right with probability ``p``; ``x -> W - x`` for the boxes."""

    def __init__(self, p: float = 0.5, seed=None):
        self.p = check_fraction(p, "p")
        self.rng = _rng(seed)

    def __call__(self, image, target):
        if self.rng.random() >= self.p:
            return image, target
        w = image.shape[1]
        b = target["boxes"]
        target = dict(target)
        target["boxes"] = np.column_stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]]).astype(np.float32).reshape(-1, 4)
        return np.ascontiguousarray(image[:, ::-1]), target

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Crops a random window; boxes are clipped to it and dropped if too little remains.

    Parameters
    ----------
    min_scale, max_scale : float
        Window side as a fraction of the image side (drawn independently for H and W).
    min_visible : float
        An object is kept when at least this fraction of its box area lies in the window.
    p : float
        Probability of cropping at all.
    """

    def __init__(self, min_scale: float = 0.6, max_scale: float = 1.0, min_visible: float = 0.5, p: float = 1.0,
                 seed=None):
        self.min_scale = check_positive(min_scale, "min_scale")
        self.max_scale = check_positive(max_scale, "max_scale")
        if not self.min_scale <= self.max_scale <= 1.0:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
        self.min_visible = check_fraction(min_visible, "min_visible")
        self.p = check_fraction(p, "p")
        self.rng = _rng(seed)

    def __call__(self, image, target):
        if self.rng.random() >= self.p:
            return image, target
        h, w = image.shape[:2]
        ch = max(1, int(round(h * self.rng.uniform(self.min_scale, self.max_scale))))
        cw = max(1, int(round(w * self.rng.uniform(self.min_scale, self.max_scale))))
        y0 = int(self.rng.integers(0, h - ch + 1))
        x0 = int(self.rng.integers(0, w - cw + 1))
        b = target["boxes"].astype(np.float64) - np.array([x0, y0, x0, y0])
        clipped = b.copy()
        np.clip(clipped[:, 0::2], 0, cw, out=clipped[:, 0::2])
        np.clip(clipped[:, 1::2], 0, ch, out=clipped[:, 1::2])
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(area > 0, kept_area / area, 0.0)
        keep = (frac >= self.min_visible) & (kept_area > 0)
        target = _filter(dict(target), keep)
        target["boxes"] = clipped[keep].astype(np.float32).reshape(-1, 4)
        target.pop("area", None)  # a segmentation area cannot be cropped; box areas are implied
        return np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), target

    def __repr__(self):
        return (f"RandomCrop(min_scale={self.min_scale}, max_scale={self.max_scale}, "
                f"min_visible={self.min_visible}, p={self.p})")


class PhotometricJitter:
    """Random brightness, contrast, saturation (factors in ``[1 - x, 1 + x]``) and hue shift.

    Parameters
    ----------
    brightness, contrast, saturation : float
        Maximum relative change; 0 disables.
    hue : float
        Maximum hue shift as a fraction of the colour circle (<= 0.5).
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.02,
                 seed=None):
        self.brightness = check_fraction(brightness, "brightness")
        self.contrast = check_fraction(contrast, "contrast")
        self.saturation = check_fraction(saturation, "saturation")
        self.hue = check_fraction(hue, "hue")
        if self.hue > 0.5:
            raise ValueError(f"hue must be <= 0.5, got {hue}")
        self.rng = _rng(seed)

    def __call__(self, image, target):
        import cv2

        img = image.astype(np.float32)
        order = self.rng.permutation(4)
        for op in order:
            if op == 0 and self.brightness:
                img *= self.rng.uniform(1 - self.brightness, 1 + self.brightness)
            elif op == 1 and self.contrast:
                grey = (img @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
                img = (img - grey) * self.rng.uniform(1 - self.contrast, 1 + self.contrast) + grey
            elif op == 2 and self.saturation:
                grey = (img @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
                img = (img - grey) * self.rng.uniform(1 - self.saturation, 1 + self.saturation) + grey
            elif op == 3 and self.hue:
                hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
                shift = int(round(self.rng.uniform(-self.hue, self.hue) * 256))
                hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int32) + shift) % 256
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), target

    def __repr__(self):
        return (f"PhotometricJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


class TransformedDataset:
    """A view of a DetectionDataset whose items pass through ``transform``.

    ``len``, ``class_names``, ``category_ids``, ``image_ids`` are the base dataset's.
    """

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform
        self.class_names = dataset.class_names
        self.category_ids = dataset.category_ids
        self.image_ids = dataset.image_ids

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, target = self.dataset[i]
        return self.transform(image, target)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
