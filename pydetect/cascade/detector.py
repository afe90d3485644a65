"""Multi-scale sliding-window detection with a cascade, identical to OpenCV's
``CascadeClassifier.detectMultiScale``."""

from __future__ import annotations

import math
import numbers
import os

import cv2
import numpy as np

from pydetect._validation import as_image, check_int, check_int32, check_scale_factor
from pydetect.cascade.model import Cascade
from pydetect.ops import _cascade
from pydetect.structures import Detections

__all__ = ["CascadeDetector", "pyramid_scales", "pyramid_levels", "MAX_PYRAMID_LEVELS"]

GROUP_EPS = 0.2  # OpenCV's GROUP_EPS in detectMultiScale


#: Most levels an image pyramid may have: cv2 loops for ever when ``scale_factor`` is within
#: rounding of 1. (A 4K image scanned with a 20-pixel window has 470 levels at 1.01.)
MAX_PYRAMID_LEVELS = 1000


def _pair(value, name, minimum, expected="a (width, height) pair"):
    try:
        w, h = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None
    return check_int(w, f"{name}[0]", minimum=minimum), check_int(h, f"{name}[1]", minimum=minimum)


def _size(value, name):
    if value is None:
        return (0, 0)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    return _pair(value, name, 0, "None, an int or a (width, height) pair")


def pyramid_scales(window_size, image_size, scale_factor=1.1, min_size=None, max_size=None):
    """The scales OpenCV scans: ``scale_factor ** k`` rounded to float32, kept while the
    rounded window fits the image and ``max_size`` and is at least ``min_size``.

    Parameters
    ----------
    window_size, image_size : (width, height) of ints >= 1
    scale_factor : float > 1
    min_size, max_size : (width, height), int or None

    Returns
    -------
    list of numpy.float32
        Empty when the image is smaller than the window. When ``min_size`` filters out
        every scale, the one whose window is closest to ``min_size`` (OpenCV's rule for
        ``min_size == max_size`` between two scales).

    Raises
    ------
    ValueError
        When the pyramid would have more than :data:`MAX_PYRAMID_LEVELS` levels
        (``scale_factor`` too close to 1 for the image).
    """
    ww, wh = _pair(window_size, "window_size", 1)
    iw, ih = _pair(image_size, "image_size", 1)
    scale_factor = check_scale_factor(scale_factor)
    min_w, min_h = _size(min_size, "min_size")
    max_w, max_h = _size(max_size, "max_size")
    if max_w == 0 or max_h == 0:
        max_w, max_h = iw, ih
    if ih < wh or iw < ww:
        return []
    # Count the levels before building them: the window sizes ww * scale_factor**k that fit,
    # give or take the rounding below (log1p stays accurate for factors near 1).
    count = math.floor(math.log(min(iw / ww, ih / wh)) / math.log1p(scale_factor - 1.0)) + 1
    if count > MAX_PYRAMID_LEVELS:
        raise ValueError(f"scale_factor={scale_factor!r} would make an image pyramid of about "
                         f"{count} levels for a {ww}x{wh} window in a {iw}x{ih} image; at most "
                         f"{MAX_PYRAMID_LEVELS} are allowed: use a larger scale_factor")
    all_scales = []
    factor = 1.0
    while True:
        # cvRound(int * double): half to even, like numpy's rint
        if np.rint(ww * factor) > iw or np.rint(wh * factor) > ih:
            break
        all_scales.append(np.float32(factor))
        factor *= scale_factor
    win = [(int(np.rint(np.float32(ww) * s)), int(np.rint(np.float32(wh) * s)))
           for s in all_scales]
    scales = []
    for s, (w, h) in zip(all_scales, win):
        if w > max_w or h > max_h:
            break
        if w < min_w or h < min_h:
            continue
        scales.append(s)
    if not scales and all_scales:
        d = [(min_w - w) ** 2 + (min_h - h) ** 2 for w, h in win]
        scales.append(all_scales[int(np.argmin(d))])
    return scales


def _grey(gray):
    img = as_image(gray, "gray")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def pyramid_levels(gray, window_size, scale_factor=1.1, min_size=None, max_size=None):
    """The levels OpenCV scans: the grey image shrunk by ``1 / s`` for each of
    :func:`pyramid_scales` (``cv2.resize`` with ``INTER_LINEAR_EXACT``, the bit-exact
    bilinear OpenCV 4 uses here; the scale-1 level is the image itself).

    Parameters
    ----------
    gray : (H, W) uint8 ndarray
    window_size, scale_factor, min_size, max_size
        As :func:`pyramid_scales`.

    Returns
    -------
    scales : list of numpy.float32
    levels : list of (h, w) uint8 ndarray
    """
    h, w = gray.shape
    scales = pyramid_scales(window_size, (w, h), scale_factor, min_size, max_size)
    levels = []
    for s in scales:
        lw = int(np.rint(np.float32(w) / s))
        lh = int(np.rint(np.float32(h) / s))
        if (lw, lh) == (w, h):
            levels.append(gray)
        else:
            inv = 1.0 / float(s)
            levels.append(cv2.resize(gray, (lw, lh), fx=inv, fy=inv,
                                     interpolation=cv2.INTER_LINEAR_EXACT))
    return scales, levels


class CascadeDetector:
    """Runs a :class:`Cascade` over an image pyramid, exactly as OpenCV does.

    The image is shrunk by ``1 / s`` for each scale ``s`` (``cv2.resize`` with
    ``INTER_LINEAR_EXACT``, the bit-exact bilinear OpenCV 4 uses here), a
    window of the cascade's size slides over each level with a step of 2 pixels below
    scale 2 and 1 above (one more step after a window fails the first stage), Haar windows
    are normalised by the pixel standard deviation over the window less a 1-pixel border
    (windows with a deviation <= 10 are rejected), and the windows that pass every stage
    are grouped (:func:`~pydetect.cascade.group_rectangles`, eps 0.2). The boxes equal
    ``cv2.CascadeClassifier.detectMultiScale`` on the same cascade, image and parameters.

    Parameters
    ----------
    cascade : Cascade or path
        A cascade or an OpenCV cascade XML file.

    References
    ----------
    P. Viola, M. Jones, "Rapid object detection using a boosted cascade of simple
    features", CVPR 2001. R. Lienhart, J. Maydt, "An extended set of Haar-like features
    for rapid object detection", ICIP 2002.
    """

    def __init__(self, cascade):
        if isinstance(cascade, (str, os.PathLike)):
            cascade = Cascade.load(cascade)
        if not isinstance(cascade, Cascade):
            raise TypeError(f"cascade must be a Cascade or a path, got {type(cascade).__name__}")
        self.cascade = cascade

    def detect(self, gray, scale_factor: float = 1.1, min_neighbors: int = 3, min_size=None,
               max_size=None, return_levels: bool = False) -> Detections:
        """Detects objects at every scale.

        Parameters
        ----------
        gray : array or Tensor, shape (H, W) or (H, W, 3)
            uint8 (or float in [0, 1], see ``pydetect._validation.as_image``). An RGB image
            is converted with OpenCV's RGB-to-grey weights.
        scale_factor : float > 1, default 1.1
            Ratio between successive pyramid scales; the pyramid may have at most
            :data:`MAX_PYRAMID_LEVELS` levels (ValueError beyond).
        min_neighbors : int, default 3
            A group needs more than this many raw detections; 0 returns the raw windows.
        min_size, max_size : (width, height), int or None
            Bounds on the window size in image pixels (``None``: no bound / the image).
        return_levels : bool, default False
            Also return ``reject_levels`` (int32, the number of stages passed, as
            ``detectMultiScale3``) and ``level_weights`` (float64, the last stage's sum, the
            best in each group) as extra fields: a score that ranks detections for AP.

        Returns
        -------
        Detections
            ``boxes`` (N, 4) xyxy; ``scores`` = the number of raw windows in each group
            (``detectMultiScale2``'s ``numDetections``; 1 when ``min_neighbors == 0``);
            labels 0.
        """
        scale_factor = check_scale_factor(scale_factor)
        min_neighbors = check_int32(min_neighbors, "min_neighbors")
        img = _grey(gray)
        h, w = img.shape
        scales, levels = pyramid_levels(img, self.cascade.window_size, scale_factor, min_size,
                                        max_size)
        rects, counts, rej, wts = _cascade.cascade_detect(self.cascade._native_model(), levels, scales, w, h,
                                                          min_neighbors, GROUP_EPS)
        boxes = rects.astype(np.float32)
        boxes[:, 2:] += boxes[:, :2]
        fields = {}
        if return_levels:
            fields = {"reject_levels": rej, "level_weights": wts}
        return Detections(boxes, scores=counts.astype(np.float32), **fields)

    __call__ = detect

    def accepted_windows(self, gray, scale_factor: float = 1.1, min_size=None, max_size=None):
        """The raw windows that pass every stage, as the pixels the scan evaluated.

        The windows :meth:`detect` groups (``min_neighbors=0`` returns their boxes), cut from
        the pyramid level where each was found: the cascade's training mines its hard
        negatives here, so what it trains on is exactly what the detector accepted.

        Parameters
        ----------
        gray, scale_factor, min_size, max_size
            As :meth:`detect`.

        Returns
        -------
        windows : (N, h, w) uint8 ndarray
            Each accepted window, ``Cascade.accepts(windows)`` all True.
        boxes : (N, 4) float32 ndarray
            Their boxes in image pixels (xyxy), as ``detect(..., min_neighbors=0)`` gives
            them before clipping.
        """
        scale_factor = check_scale_factor(scale_factor)
        img = _grey(gray)
        scales, levels = pyramid_levels(img, self.cascade.window_size, scale_factor, min_size,
                                        max_size)
        where, _ = _cascade.cascade_scan(self.cascade._native_model(), levels, scales)
        ww, wh = self.cascade.window_size
        windows = np.empty((len(where), wh, ww), np.uint8)
        boxes = np.empty((len(where), 4), np.float32)
        for i, (k, x, y) in enumerate(where):
            windows[i] = levels[k][y:y + wh, x:x + ww]
            s = scales[k]  # OpenCV's box: cvRound(position * scale), cvRound(size * scale)
            x1, y1 = np.rint(np.float32(x) * s), np.rint(np.float32(y) * s)
            boxes[i] = (x1, y1, x1 + np.rint(np.float32(ww) * s), y1 + np.rint(np.float32(wh) * s))
        return windows, boxes

    def __repr__(self):
        return f"CascadeDetector({self.cascade!r})"
