"""Training transforms that move the boxes with the pixels.

Each transform is a callable ``t(image, target, rng=None) -> (image, target)`` on an RGB
uint8 (H, W, 3) image and a target dict (``boxes`` (K, 4) xyxy, ``labels`` and any other
per-object arrays, which are filtered together when objects are dropped; geometric transforms
also move an optional ``proposals`` (R, 4) array). Random transforms draw from ``rng`` when
one is given (a training loop passes its own, checkpointed generator) and otherwise from
their own ``numpy.random.Generator`` (``seed`` argument), so a pipeline is reproducible.
:class:`TransformedDataset` applies a pipeline on indexing; :func:`detection_augmentation`
builds the training augmentation the CNN detectors use by default.
"""

from __future__ import annotations

import cv2
import numpy as np

from pydetect._validation import check_fraction, check_image_size, check_int, check_positive, check_size

__all__ = ["Compose", "Resize", "RandomHorizontalFlip", "RandomCrop", "PhotometricJitter", "RandomInvert",
           "RandomColourRotation", "RandomGrayscale", "RandomGaussianBlur", "RandomNoise", "RandomScale",
           "RandomShear", "TransformedDataset", "detection_augmentation"]

#: Target keys holding boxes that geometric transforms move with the pixels.
_BOX_KEYS = ("boxes", "proposals")


#: ITU-R BT.601 luma weights, as cv2.cvtColor(RGB2GRAY) uses.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _rng(seed):
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_int(seed, "seed", minimum=0))


def _resize(image, target, oh: int, ow: int):
    """``image`` resized to (oh, ow) (area filter when shrinking), boxes and ``area`` scaled."""
    h, w = image.shape[:2]
    out = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA if oh * ow < h * w else cv2.INTER_LINEAR)
    sx, sy = ow / w, oh / h
    target = _map_boxes(target, lambda b: b * np.array([sx, sy, sx, sy]))
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    return out, target


def _filter(target: dict, keep: np.ndarray) -> dict:
    k = target["boxes"].shape[0]
    return {key: (v[keep] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == k else v)
            for key, v in target.items()}


def _map_boxes(target: dict, fn) -> dict:
    """A copy of ``target`` with ``fn`` applied to each box array (``boxes``, ``proposals``)."""
    target = dict(target)
    for key in _BOX_KEYS:
        if key in target and target[key] is not None:
            target[key] = np.asarray(fn(np.asarray(target[key], np.float64).reshape(-1, 4)), np.float32)
    return target


class Compose:
    """Applies transforms in order (passing ``rng`` on to each)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable (image, target) -> (image, target), "
                                f"got {type(t).__name__}")

    def __call__(self, image, target, rng=None):
        for t in self.transforms:
            image, target = t(image, target, rng)
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

    def __call__(self, image, target, rng=None):
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
        oh, ow = self.output_size(h, w)
        if (oh, ow) == (h, w):
            return image, target
        # min_size scales a thin image's long side up without bound: refuse before allocating.
        check_image_size(oh, ow, f"the resized {w}x{h} image")
        return _resize(image, target, oh, ow)

    def __repr__(self):
        return f"Resize(size={self.size}, min_size={self.min_size}, max_size={self.max_size})"


class _RandomTransform:
    """A transform applied with probability ``p``: ``apply(image, target, rng)`` runs when a
    uniform draw from ``rng`` (the caller's generator, else the transform's own from ``seed``)
    falls below ``p``."""

    def __init__(self, p: float, seed=None):
        self.p = check_fraction(p, "p")
        self.rng = _rng(seed)

    def __call__(self, image, target, rng=None):
        rng = rng or self.rng
        if rng.random() >= self.p:
            return image, target
        return self.apply(image, target, rng)


class RandomHorizontalFlip(_RandomTransform):
    """Mirrors the image left-right with probability ``p``; ``x -> W - x`` for the boxes."""

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__(p, seed)

    def apply(self, image, target, rng):
        w = image.shape[1]
        target = _map_boxes(target, lambda b: np.column_stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]]))
        return np.ascontiguousarray(image[:, ::-1]), target

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop(_RandomTransform):
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
        super().__init__(p, seed)

    def apply(self, image, target, rng):
        h, w = image.shape[:2]
        ch = max(1, int(round(h * rng.uniform(self.min_scale, self.max_scale))))
        cw = max(1, int(round(w * rng.uniform(self.min_scale, self.max_scale))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
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

    def __call__(self, image, target, rng=None):
        rng = rng or self.rng
        img = image.astype(np.float32)
        order = rng.permutation(4)
        for op in order:
            if op == 0 and self.brightness:
                img *= rng.uniform(1 - self.brightness, 1 + self.brightness)
            elif op == 1 and self.contrast:
                grey = (img @ _LUMA).mean()
                img = (img - grey) * rng.uniform(1 - self.contrast, 1 + self.contrast) + grey
            elif op == 2 and self.saturation:
                grey = (img @ _LUMA)[:, :, None]
                img = (img - grey) * rng.uniform(1 - self.saturation, 1 + self.saturation) + grey
            elif op == 3 and self.hue:
                hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
                shift = int(round(rng.uniform(-self.hue, self.hue) * 256))
                hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int32) + shift) % 256
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), target

    def __repr__(self):
        return (f"PhotometricJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


class RandomInvert(_RandomTransform):
    """Inverts the image (``255 - x``) with probability ``p``: the other ink polarity.

    Dark ink on a light ground becomes light ink on a dark ground; for objects defined by
    their shape, not their brightness (digits, text), both polarities occur in the wild.
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__(p, seed)

    def apply(self, image, target, rng):
        return 255 - image, target

    def __repr__(self):
        return f"RandomInvert(p={self.p})"


class RandomColourRotation(_RandomTransform):
    """Turns the image's colours about their mean by a random orthogonal 3x3 map (a rotation or
    a reflection of the RGB cube, drawn uniformly) and scales their spread by a factor drawn
    uniformly from ``contrast_range``, with probability ``p``.

    Why: an object known by its shape (a digit, a letter, a sign) can differ from its
    surroundings in any colour direction: dark or bright ink, red ink on grey paper, blue on
    yellow. A global jitter of brightness, saturation and hue keeps each training object's
    contrast along the colour direction the data happened to have; this map sends every
    colour difference ``d`` to ``g * Q d``, so the contrast keeps its size (times ``g``) and
    takes any direction, and a detector must learn the shape rather than its colour. The
    reflections among the maps include the other ink polarity.

    Parameters
    ----------
    p : float
        Probability of the transform.
    contrast_range : (float, float)
        Range of the contrast factor ``g`` (``0 <= lo <= hi``); below 1 lowers the contrast.
    """

    def __init__(self, p: float = 0.5, contrast_range=(0.4, 1.0), seed=None):
        super().__init__(p, seed)
        self.contrast_range = _check_range(contrast_range, "contrast_range")

    @staticmethod
    def random_orthogonal(rng) -> np.ndarray:
        """A 3x3 orthogonal matrix drawn from the uniform (Haar) distribution on O(3): the QR
        factor of a Gaussian matrix, its columns' signs fixed by R's diagonal (without that
        fix the draw is not uniform)."""
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)

    def apply(self, image, target, rng):
        m = self.random_orthogonal(rng) * rng.uniform(*self.contrast_range)
        pixels = image.reshape(-1, 3).astype(np.float32)
        mean = pixels.mean(axis=0)
        out = (pixels - mean) @ m.T.astype(np.float32) + mean
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape), target

    def __repr__(self):
        return f"RandomColourRotation(p={self.p}, contrast_range={self.contrast_range})"


class RandomGrayscale(_RandomTransform):
    """Replaces the colours by their luma (kept as 3 channels) with probability ``p``."""

    def __init__(self, p: float = 0.1, seed=None):
        super().__init__(p, seed)

    def apply(self, image, target, rng):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return np.repeat(grey[:, :, None], 3, axis=2), target

    def __repr__(self):
        return f"RandomGrayscale(p={self.p})"


class RandomGaussianBlur(_RandomTransform):
    """Gaussian blur with ``sigma`` drawn uniformly from ``sigma_range`` (px), with probability ``p``:
    softer rendering, resampling and focus than the training images have."""

    def __init__(self, p: float = 0.2, sigma_range=(0.3, 1.5), seed=None):
        super().__init__(p, seed)
        self.sigma_range = _check_range(sigma_range, "sigma_range")

    def apply(self, image, target, rng):
        sigma = rng.uniform(*self.sigma_range)
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101), target

    def __repr__(self):
        return f"RandomGaussianBlur(p={self.p}, sigma_range={self.sigma_range})"


class RandomNoise(_RandomTransform):
    """Adds i.i.d. Gaussian noise whose standard deviation (grey levels) is drawn uniformly
    from ``std_range``, with probability ``p``: sensor noise and compression grain."""

    def __init__(self, p: float = 0.2, std_range=(2.0, 10.0), seed=None):
        super().__init__(p, seed)
        self.std_range = _check_range(std_range, "std_range")

    def apply(self, image, target, rng):
        noisy = image + rng.normal(0.0, rng.uniform(*self.std_range), image.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), target

    def __repr__(self):
        return f"RandomNoise(p={self.p}, std_range={self.std_range})"


class RandomScale(_RandomTransform):
    """Resizes the image by independent factors along x and y, each log-uniform in
    ``scale_range`` = (lo, hi), with probability ``p``; boxes (and proposals) follow exactly.

    Axis-aligned scaling keeps every box tight around its object (a rotation would not), and
    changing the aspect ratio too gives new shapes of the same objects.
    """

    def __init__(self, scale_range=(0.8, 1.25), p: float = 1.0, min_side: int = 8, seed=None):
        self.scale_range = _check_range(scale_range, "scale_range")
        if self.scale_range[0] <= 0:
            raise ValueError(f"scale_range must be positive, got {scale_range!r}")
        super().__init__(p, seed)
        self.min_side = check_int(min_side, "min_side", minimum=1)

    def apply(self, image, target, rng):
        lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        sx, sy = np.exp(rng.uniform(lo, hi, 2))
        h, w = image.shape[:2]
        oh, ow = max(int(round(h * sy)), self.min_side), max(int(round(w * sx)), self.min_side)
        return _resize(image, target, oh, ow)

    def __repr__(self):
        return f"RandomScale(scale_range={self.scale_range}, p={self.p})"


class RandomShear(_RandomTransform):
    """Slants the image horizontally by a shear drawn uniformly from [-shear, shear] (x moves
    by that fraction of the height above the image centre), with probability ``p``.

    Each box becomes the bounding box of its slanted corners, so it grows by ``|shear| *
    height``: keep ``shear`` small (handwriting slant is ~0.1-0.3). The image keeps its size;
    uncovered corners are filled by reflection.
    """

    def __init__(self, shear: float = 0.15, p: float = 0.5, seed=None):
        self.shear = check_fraction(shear, "shear")
        super().__init__(p, seed)

    def apply(self, image, target, rng):
        k = rng.uniform(-self.shear, self.shear)
        h, w = image.shape[:2]
        cy = h / 2.0
        m = np.array([[1.0, k, -k * cy], [0.0, 1.0, 0.0]])
        out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

        def slant(b):
            xs = b[:, [0, 2, 0, 2]] + k * (b[:, [1, 1, 3, 3]] - cy)
            return np.column_stack([np.clip(xs.min(1), 0, w), b[:, 1], np.clip(xs.max(1), 0, w), b[:, 3]])

        target = _map_boxes(target, slant)
        boxes = target["boxes"]
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():  # slanted out of the image entirely
            target = _filter(target, keep)
        return out, target

    def __repr__(self):
        return f"RandomShear(shear={self.shear}, p={self.p})"


def _check_range(value, name):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (lo, hi), got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name} must satisfy 0 <= lo <= hi (finite), got {value!r}")
    return lo, hi


def detection_augmentation(*, hflip: bool = False, invert: float = 0.0, colour: float = 0.3,
                           grey: float = 0.1, blur: float = 0.2, noise: float = 0.2,
                           scale_range=(0.8, 1.25), shear: float = 0.0, recolour: float = 0.0) -> Compose:
    """The training augmentation of pydetect's CNN detectors, as one :class:`Compose`.

    Photometric: brightness, contrast and saturation jitter of up to ``colour`` (and a hue
    shift of up to ``colour / 10`` of the circle), the other ink polarity with probability
    ``invert``, a random turn of the colour space (:class:`RandomColourRotation`, contrast
    0.4-1.0) with probability ``recolour``, grey with probability ``grey``, Gaussian blur
    and noise each with their probability. Geometric: independent x/y scale jitter in
    ``scale_range`` (None: off), horizontal flips if ``hflip`` (only for classes that are
    mirror symmetric), a horizontal shear of up to ``shear``. Geometric steps come first so
    that blur and noise act on the final pixels. Each argument of 0 (or None) leaves its step out.

    Parameters
    ----------
    hflip : bool
    invert, recolour, grey, blur, noise : float in [0, 1]
        Probabilities of each step.
    colour : float in [0, 1]
    scale_range : (float, float) or None
    shear : float in [0, 1]

    Returns
    -------
    Compose
        Call it as ``pipeline(image, target, rng)``.
    """
    steps = []
    if scale_range is not None:
        steps.append(RandomScale(scale_range))
    if hflip:
        steps.append(RandomHorizontalFlip(0.5))
    if check_fraction(shear, "shear") > 0:
        steps.append(RandomShear(shear, p=0.5))
    if check_fraction(colour, "colour") > 0:
        steps.append(PhotometricJitter(colour, colour, colour, colour / 10))
    for name, value, make in (("invert", invert, RandomInvert), ("recolour", recolour, RandomColourRotation),
                              ("grey", grey, RandomGrayscale),
                              ("blur", blur, RandomGaussianBlur), ("noise", noise, RandomNoise)):
        if check_fraction(value, name) > 0:
            steps.append(make(p=value))
    return Compose(steps)


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
