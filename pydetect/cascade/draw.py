"""Drawing a cascade feature on a window (for pydetect.viz)."""

from __future__ import annotations

import numpy as np

from pydetect.cascade.model import Cascade, HaarFeature, LBPFeature

__all__ = ["draw_feature", "feature_mask"]


def _tilted_corner_mask(X, Y, w, h):
    # Pixels counted by tilted-table entry (X, Y): y < Y and |x - X + 1| <= Y - y - 1.
    ys, xs = np.mgrid[0:h, 0:w]
    return (ys < Y) & (np.abs(xs - X + 1) <= Y - ys - 1)


def feature_mask(feature, window_size):
    """Per-pixel weight of a Haar feature over the window, ``(h, w)`` float32.

    The value of the feature on a window equals ``(mask * window).sum()`` (before
    variance normalisation). For an LBP feature, the block index 0..8 of each pixel
    (-1 outside), row by row from the top-left block.
    """
    w, h = window_size
    if isinstance(feature, LBPFeature):
        x, y, bw, bh = feature.rect
        m = np.full((h, w), -1, np.int32)
        for i in range(3):
            for j in range(3):
                m[y + i * bh:y + (i + 1) * bh, x + j * bw:x + (j + 1) * bw] = i * 3 + j
        return m
    m = np.zeros((h, w), np.float32)
    for (x, y, rw, rh), wt in zip(feature.rects, feature.weights):
        if wt == 0:
            continue
        if not feature.tilted:
            m[y:y + rh, x:x + rw] += wt
        else:
            # t[p0] - t[p1] - t[p2] + t[p3] with OpenCV's tilted corner offsets
            sel = (_tilted_corner_mask(x, y, w, h).astype(np.int32)
                   - _tilted_corner_mask(x - rh, y + rh, w, h)
                   - _tilted_corner_mask(x + rw, y + rw, w, h)
                   + _tilted_corner_mask(x + rw - rh, y + rw + rh, w, h))
            m += wt * sel
    return m


def draw_feature(cascade_or_feature, index=None, window=None, scale: int = 8,
                 alpha: float = 0.6):
    """Renders a Haar or LBP feature over a window as an RGB image.

    Parameters
    ----------
    cascade_or_feature : Cascade, HaarFeature or LBPFeature
    index : int, optional
        Feature index when a cascade is given.
    window : uint8 array, shape (h, w), optional
        Grey window to draw on (default: mid grey), of the cascade's window size.
    scale : int, default 8
        Each window pixel becomes ``scale x scale`` output pixels.
    alpha : float in [0, 1]
        Opacity of the overlay.

    Returns
    -------
    (h * scale, w * scale, 3) uint8
        Positive-weight pixels in red, negative in blue (Haar); the LBP centre block in
        red and its eight neighbours in alternating blues.
    """
    if isinstance(cascade_or_feature, Cascade):
        if index is None:
            raise ValueError("index is required when a cascade is given")
        feats = cascade_or_feature.features
        if not 0 <= int(index) < len(feats):
            raise ValueError(f"index must be in [0, {len(feats)}), got {index}")
        feature, size = feats[int(index)], cascade_or_feature.window_size
    elif isinstance(cascade_or_feature, (HaarFeature, LBPFeature)):
        feature = cascade_or_feature
        if window is not None:
            size = (np.asarray(window).shape[1], np.asarray(window).shape[0])
        else:
            if isinstance(feature, LBPFeature):
                x, y, bw, bh = feature.rect
                size = (x + 3 * bw, y + 3 * bh)
            else:
                r = np.asarray(feature.rects)
                size = (int((r[:, 0] + r[:, 2]).max()) + 1, int((r[:, 1] + r[:, 2] + r[:, 3]).max()) + 1)
    else:
        raise TypeError("draw_feature needs a Cascade, HaarFeature or LBPFeature, got "
                        f"{type(cascade_or_feature).__name__}")
    w, h = size
    base = (np.full((h, w), 128, np.uint8) if window is None
            else np.asarray(window, np.uint8).reshape(h, w))
    rgb = np.repeat(base[:, :, None].astype(np.float32), 3, axis=2)
    mask = feature_mask(feature, (w, h))
    color = np.zeros((h, w, 3), np.float32)
    on = np.zeros((h, w), bool)
    if isinstance(feature, LBPFeature):
        on = mask >= 0
        color[mask == 4] = (255, 0, 0)
        color[(mask >= 0) & (mask != 4) & (mask % 2 == 0)] = (0, 80, 255)
        color[(mask >= 0) & (mask % 2 == 1)] = (0, 180, 255)
    else:
        on = mask != 0
        color[mask > 0] = (255, 0, 0)
        color[mask < 0] = (0, 0, 255)
    rgb[on] = (1 - alpha) * rgb[on] + alpha * color[on]
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
