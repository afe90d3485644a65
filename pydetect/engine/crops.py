"""Object and background crops of a detection dataset, cut at the scale the detector sees:
the data of the crop pretraining (the offline analogue of ImageNet pretraining).

Glossary of shape letters: M crops; S crop side.
"""

from __future__ import annotations

import cv2
import numpy as np

from pydetect import ops

__all__ = ["extract_crops"]


def _log_uniform_pair(rng, scale_range):
    """Two independent factors (x, y), log-uniform in ``scale_range`` = (lo, hi)."""
    lo, hi = scale_range
    return tuple(np.exp(rng.uniform(np.log(lo), np.log(hi), 2)))


def _native_crop(image, box, size, context, shift, scale=1.0, stretch=(1.0, 1.0), shear=0.0):
    """A square window around ``box`` at ``scale`` times native scale (shrunk only if the
    object needs more than ``size`` pixels with its context), resized to size x size, the
    image first stretched by ``stretch`` = (sx, sy) and slanted by ``shear`` (x moves by
    ``shear`` times the height above the box centre); returns (crop, box in crop)."""
    x1, y1, x2, y2 = box
    sx, sy = stretch
    # Work in the stretched image's pixels: the object is (sx w, sy h) there.
    side = max(float(size) / scale, max((x2 - x1) * sx, (y2 - y1) * sy) * context)
    a = size / side
    ax, ay = a * sx, a * sy
    ox, oy = (x1 + x2) / 2, (y1 + y2) / 2
    cx, cy = ox + shift[0] * side / sx, oy + shift[1] * side / sy
    # u = ax (x - cx) - shear ay (y - oy) + size / 2,  v = ay (y - cy) + size / 2
    m = np.array([[ax, -shear * ay, size / 2 - ax * cx + shear * ay * oy],
                  [0, ay, size / 2 - ay * cy]], np.float32)
    # m maps continuous coordinates (pixel i spans [i, i + 1]); cv2 puts pixel centres at
    # integer indices, so it gets m conjugated by the half-pixel shift.
    m_index = m.copy()
    m_index[:, 2] += m[:, :2].sum(1) * 0.5 - 0.5
    crop = cv2.warpAffine(image, m_index, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The slanted box's corners spread by shear * height / 2 on each side; the box keeps
    # its width (the pooled box follows the object's centre line, not its hull).
    u1, u2 = ax * (x1 - cx) + size / 2, ax * (x2 - cx) + size / 2
    inside = np.array([u1, ay * (y1 - cy) + size / 2, u2, ay * (y2 - cy) + size / 2], np.float32)
    return crop, inside


def extract_crops(dataset, *, size=48, context=1.3, copies=2, backgrounds_per_image=3, jitter=0.1,
                  scale=1.0, stretch_range=None, shear_range=0.0, seed=0):
    """Object crops (label + 1) and background crops (label 0) at the scale the detector sees.

    Each crop is a size x size window around a box at the image's native scale (objects
    larger than ``size / context`` are shrunk to fit), so that the backbone learns features
    at the scales it meets in whole images; the box inside the crop is returned with it
    (the classifier pools that box, as the detector's RoI head does). Each object gives
    ``copies`` crops, its box jittered by up to ``jitter`` of its size and the window
    shifted by up to 15%; background boxes have the sizes of the dataset's objects and
    IoU < 0.2 with every object. ``scale`` is the detector's ``image_scale``: crops are cut
    at ``scale`` times native scale, as the detector's backbone sees the images. With
    ``stretch_range`` = (lo, hi), each object crop is cut from the image stretched by
    independent log-uniform factors along x and y, as :class:`pydetect.data.transforms.RandomScale` does to whole
    training images; with ``shear_range`` = s > 0, each object crop is also slanted by a
    uniform shear in [-s, s] about the box centre (the box keeps its width and height).

    Returns
    -------
    crops : (M, S, S, 3) uint8
    labels : (M,) int64
    boxes : (M, 4) float32, the pooled box inside each crop
    """
    rng = np.random.default_rng(seed)
    crops, labels, inner = [], [], []
    all_sizes = []
    for i in range(len(dataset)):
        image, t = dataset[i]
        boxes = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
        h, w = image.shape[:2]
        for box, lab in zip(boxes, np.asarray(t["labels"]).reshape(-1)):
            bw, bh = box[2] - box[0], box[3] - box[1]
            all_sizes.append(np.sqrt(bw * bh))
            for _ in range(copies):
                jittered = box + rng.uniform(-jitter, jitter, 4) * [bw, bh, bw, bh]
                stretch = (1.0, 1.0) if stretch_range is None else \
                    _log_uniform_pair(rng, stretch_range)
                shear = rng.uniform(-shear_range, shear_range) if shear_range else 0.0
                crop, b = _native_crop(image, jittered, size, context, rng.uniform(-0.15, 0.15, 2), scale,
                                       stretch, shear)
                crops.append(crop)
                inner.append(b)
                labels.append(int(lab) + 1)
        sizes = all_sizes[-20:] or [min(h, w) / 4]
        made = 0
        for _ in range(50 * backgrounds_per_image):
            if made >= backgrounds_per_image:
                break
            s = float(rng.choice(sizes)) * rng.uniform(0.7, 1.4)
            bw = min(s * rng.uniform(0.7, 1.0), w - 1)
            bh = min(s * rng.uniform(1.0, 1.5), h - 1)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cand = np.array([[x, y, x + bw, y + bh]])
            if len(boxes) and np.nanmax(ops.box_iou(cand, boxes)) >= 0.2:
                continue
            crop, b = _native_crop(image, cand[0], size, context, rng.uniform(-0.15, 0.15, 2), scale)
            crops.append(crop)
            inner.append(b)
            labels.append(0)
            made += 1
    return np.stack(crops), np.asarray(labels, np.int64), np.stack(inner).astype(np.float32)
