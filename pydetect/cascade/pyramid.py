"""The image pyramid a cascade scans, exactly as OpenCV's ``detectMultiScale`` builds it.

One home for the scales, the shrunk levels and the grey conversion: the detector scans these
levels and training mines its negatives from the same ones.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np

from pydetect._validation import as_image, check_int, check_scale_factor

__all__ = ["pyramid_scales", "level_sizes", "pyramid_levels", "grey_image", "check_size_bound", "MAX_PYRAMID_LEVELS"]


#: Most levels an image pyramid may have: cv2 loops for ever when ``scale_factor`` is within
#: rounding of 1. (A 4K image scanned with a 20-pixel window has 470 levels at 1.01.)
MAX_PYRAMID_LEVELS = 1000


def _pair(value, name, minimum, expected="a (width, height) pair"):
    try:
        w, h = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None
    return check_int(w, f"{name}[0]", minimum=minimum), check_int(h, f"{name}[1]", minimum=minimum)


def check_size_bound(value, name):
    """A ``min_size`` / ``max_size`` bound as a (width, height) pair of ints >= 0: None is (0, 0)
    (no bound), an int ``n`` is (n, n). TypeError / ValueError naming ``name`` otherwise."""
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
    min_w, min_h = check_size_bound(min_size, "min_size")
    max_w, max_h = check_size_bound(max_size, "max_size")
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


def grey_image(image, name="gray"):
    """``image`` as a uint8 (H, W) array: an RGB image is converted with OpenCV's weights
    (``cv2.COLOR_RGB2GRAY``), other inputs as :func:`pydetect._validation.as_image` takes them."""
    img = as_image(image, name)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def level_sizes(image_size, scales):
    """The (width, height) of the level at each scale: OpenCV's
    ``Size(cvRound(width / scale), cvRound(height / scale))`` in float32.

    Parameters
    ----------
    image_size : (width, height) of ints
    scales : sequence of float32, as :func:`pyramid_scales` returns them

    Returns
    -------
    list of (int, int)
    """
    w, h = image_size
    return [(int(np.rint(np.float32(w) / s)), int(np.rint(np.float32(h) / s))) for s in scales]


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
    for s, (lw, lh) in zip(scales, level_sizes((w, h), scales)):
        if (lw, lh) == (w, h):
            levels.append(gray)
        else:
            inv = 1.0 / float(s)
            levels.append(cv2.resize(gray, (lw, lh), fx=inv, fy=inv,
                                     interpolation=cv2.INTER_LINEAR_EXACT))
    return scales, levels
