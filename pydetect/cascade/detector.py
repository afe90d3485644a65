"""Multi-scale sliding-window detection with a cascade, identical to OpenCV's
``CascadeClassifier.detectMultiScale``."""

from __future__ import annotations

import os

import numpy as np

from pydetect._validation import check_int32, check_scale_factor, to_numpy
from pydetect.cascade.model import Cascade
from pydetect.cascade.pyramid import grey_image, level_sizes, pyramid_levels, pyramid_scales
from pydetect.ops import _cascade
from pydetect.structures import Detections

__all__ = ["CascadeDetector", "flat_windows"]

GROUP_EPS = 0.2  # OpenCV's GROUP_EPS in detectMultiScale


class CascadeDetector:
    """Runs a :class:`Cascade` over an image pyramid, exactly as OpenCV does.

    The image is shrunk by ``1 / s`` for each scale ``s`` (bit-identical to ``cv2.resize``
    with ``INTER_LINEAR_EXACT``, the bit-exact bilinear OpenCV 4 uses here; the levels are
    resized in the scan's parallel native pass), a
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
            :data:`~pydetect.cascade.pyramid.MAX_PYRAMID_LEVELS` levels (ValueError beyond).
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
        img = grey_image(gray)
        h, w = img.shape
        # The levels (pyramid_levels' pixels) are resized in the scan's parallel pass.
        scales = pyramid_scales(self.cascade.window_size, (w, h), scale_factor, min_size, max_size)
        rects, counts, rej, wts = _cascade.cascade_detect(self.cascade._native_model(), img,
                                                          level_sizes((w, h), scales), scales, w, h,
                                                          min_neighbors, GROUP_EPS)
        boxes = rects.astype(np.float32)
        boxes[:, 2:] += boxes[:, :2]
        fields = {}
        if return_levels:
            fields = {"reject_levels": rej, "level_weights": wts}
        return Detections(boxes, scores=counts.astype(np.float32), **fields)

    __call__ = detect

    def accepted_windows(self, gray, scale_factor: float = 1.1, min_size=None, max_size=None,
                         return_scanned: bool = False):
        """The raw windows that pass every stage, as the pixels the scan evaluated.

        The windows :meth:`detect` groups (``min_neighbors=0`` returns their boxes), cut from
        the pyramid level where each was found: the cascade's training mines its hard
        negatives here, so what it trains on is exactly what the detector accepted.

        Parameters
        ----------
        gray, scale_factor, min_size, max_size
            As :meth:`detect`.
        return_scanned : bool, default False
            Also return the number of window positions the scan visited (the denominator of
            the fraction of windows a cascade accepts).

        Returns
        -------
        windows : (N, h, w) uint8 ndarray
            Each accepted window, ``Cascade.accepts(windows)`` all True.
        boxes : (N, 4) float32 ndarray
            Their boxes in image pixels (xyxy), as ``detect(..., min_neighbors=0)`` gives
            them before clipping.
        scanned : int
            Only with ``return_scanned``.
        """
        scale_factor = check_scale_factor(scale_factor)
        img = grey_image(gray)
        scales, levels = pyramid_levels(img, self.cascade.window_size, scale_factor, min_size,
                                        max_size)
        where, _, scanned = _cascade.cascade_scan(self.cascade._native_model(), levels, scales)
        ww, wh = self.cascade.window_size
        windows = np.empty((len(where), wh, ww), np.uint8)
        boxes = np.empty((len(where), 4), np.float32)
        for i, (k, x, y) in enumerate(where):
            windows[i] = levels[k][y:y + wh, x:x + ww]
            s = scales[k]  # OpenCV's box: cvRound(position * scale), cvRound(size * scale)
            x1, y1 = np.rint(np.float32(x) * s), np.rint(np.float32(y) * s)
            boxes[i] = (x1, y1, x1 + np.rint(np.float32(ww) * s), y1 + np.rint(np.float32(wh) * s))
        return (windows, boxes, int(scanned)) if return_scanned else (windows, boxes)

    def __repr__(self):
        return f"CascadeDetector({self.cascade!r})"


def flat_windows(windows) -> np.ndarray:
    """Whether each window is flat by the Haar detector's rule, which rejects it before the
    first stage: its pixel standard deviation over the window less a 1-pixel border is <= 10
    (OpenCV's variance normalisation, computed by the scan's own code).

    Parameters
    ----------
    windows : (N, h, w) uint8 array, h and w >= 3

    Returns
    -------
    (N,) bool ndarray
        No Haar cascade accepts a flat window; cascade training leaves them out.
    """
    arr, _ = to_numpy(windows, "windows")
    if arr.dtype != np.uint8:
        raise TypeError(f"windows must be uint8, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1] < 3 or arr.shape[2] < 3:
        raise ValueError(f"windows must have shape (N, h, w) with h, w >= 3, got {tuple(arr.shape)}")
    return _cascade.cascade_flat_windows(arr)
