"""Local features of the Implicit Shape Model: interest points with a scale, and descriptors.

Glossary: F features. A feature is ``(x, y, scale)``: its patch is the square of half-size
``patch_factor * scale`` centred on ``(x, y)``.

- interest points: Difference-of-Gaussians extrema (``cv2.SIFT`` keypoints, scale = half
  the keypoint size) or a dense multi-scale grid;
- descriptors: grey patches resampled to ``patch_size`` x ``patch_size`` and normalised to
  zero mean and unit norm (their dot product is the normalised grey-level correlation,
  NGC, of Leibe et al.), or SIFT descriptors (``cv2.SIFT.compute``, L2-normalised).

References
----------
B. Leibe, A. Leonardis, B. Schiele. IJCV 77, 2008 (patches, NGC, sec. 3).
D. Lowe. "Distinctive image features from scale-invariant keypoints". IJCV 60, 2004.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_gray", "detect_keypoints", "harris_laplace", "extract_patches", "extract_sift", "describe"]


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey from a validated (H, W) or (H, W, 3) RGB uint8 image."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def detect_keypoints(gray, *, detector="dog", scales=(3.0, 4.5, 6.75, 10.0), step=1.0,
                     contrast_threshold=0.02, min_scale=1.5, max_features=3000):
    """Interest points with a scale.

    Parameters
    ----------
    gray : uint8 ndarray, shape (H, W)
    detector : {"dog", "harris-laplace", "dense"}
        ``"dog"``: Difference-of-Gaussians extrema found by ``cv2.SIFT`` (scale = keypoint
        size / 2). ``"harris-laplace"``: :func:`harris_laplace`. ``"dense"``: a grid at
        each of ``scales`` with spacing ``step * scale``.
    scales : sequence of float
        Dense grid scales in pixels.
    step : float
        Dense grid spacing in units of the scale.
    contrast_threshold : float
        DoG contrast threshold (``cv2.SIFT_create(contrastThreshold=...)``).
    min_scale : float
        DoG keypoints with a smaller scale are dropped.
    max_features : int
        At most this many DoG keypoints (the strongest responses).

    Returns
    -------
    ndarray, shape (F, 3), float64
        ``(x, y, scale)``.
    """
    h, w = gray.shape
    if detector == "dense":
        out = []
        for s in scales:
            d = max(step * s, 1.0)
            xs = np.arange(d / 2, w, d)
            ys = np.arange(d / 2, h, d)
            gx, gy = np.meshgrid(xs, ys)
            out.append(np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(s))]))
        return np.concatenate(out) if out else np.zeros((0, 3))
    if detector == "harris-laplace":
        pts = harris_laplace(gray, max_features=max_features)
        return pts[pts[:, 2] >= min_scale]
    sift = cv2.SIFT_create(nfeatures=int(max_features), contrastThreshold=float(contrast_threshold))
    kps = sift.detect(gray, None)
    if not kps:
        return np.zeros((0, 3))
    pts = np.array([(k.pt[0], k.pt[1], k.size / 2.0) for k in kps], np.float64)
    pts = pts[pts[:, 2] >= min_scale]
    # SIFT reports one keypoint per dominant orientation: keep distinct (x, y, scale).
    return np.unique(np.round(pts, 3), axis=0)


def harris_laplace(gray, *, sigma0=1.5, n_scales=8, step=1.4, alpha=0.06, threshold=1e-6,
                   max_features=3000):
    """Harris-Laplace interest points (Mikolajczyk & Schmid, IJCV 2004), simplified.

    At integration scales ``sigma_n = sigma0 * step^n`` (differentiation scale 0.7 sigma_n),
    points are the 8-neighbourhood maxima of the scale-normalised Harris measure
    ``det(M) - alpha trace(M)^2`` above ``threshold`` (image in [0, 1]); a point is kept
    when the scale-normalised Laplacian ``|sigma^2 (Lxx + Lyy)|`` at its position peaks
    at its scale over the neighbouring scales (one pass, no iterative refinement).

    Returns
    -------
    ndarray, shape (F, 3), float64
        ``(x, y, sigma_n)``, by decreasing Harris response, at most ``max_features``.
    """
    img = gray.astype(np.float32) / 255.0
    sigmas = [sigma0 * step**n for n in range(n_scales + 2)]  # one extra scale each side
    lap, harris = [], []
    for i, sigma in enumerate(sigmas):
        sd = 0.7 * sigma
        smooth = cv2.GaussianBlur(img, (0, 0), sd)
        lx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        ly = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        lxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3) / 4.0
        lyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3) / 4.0
        lap.append(np.abs(sd**2 * (lxx + lyy)))
        if 0 < i <= n_scales:
            a = cv2.GaussianBlur(lx * lx, (0, 0), sigma) * sd**2
            b = cv2.GaussianBlur(lx * ly, (0, 0), sigma) * sd**2
            c = cv2.GaussianBlur(ly * ly, (0, 0), sigma) * sd**2
            harris.append(a * c - b * b - alpha * (a + c) ** 2)
        else:
            harris.append(None)
    out = []
    for i in range(1, n_scales + 1):
        r = harris[i]
        peak = (r >= cv2.dilate(r, np.ones((3, 3), np.uint8))) & (r > threshold)
        peak &= (lap[i] >= lap[i - 1]) & (lap[i] >= lap[i + 1])
        ys, xs = np.nonzero(peak)
        out.append(np.column_stack([xs, ys, np.full(len(xs), sigmas[i]), r[ys, xs]]))
    pts = np.concatenate(out) if out else np.zeros((0, 4))
    pts = pts[np.argsort(-pts[:, 3], kind="stable")][:max_features]
    return np.ascontiguousarray(pts[:, :3], dtype=np.float64)


def extract_patches(gray, points, *, patch_size=15, patch_factor=2.5):
    """Zero-mean, unit-norm grey patches resampled to ``patch_size`` x ``patch_size``.

    The patch of a point ``(x, y, s)`` spans ``[x - r, x + r] x [y - r, y + r]`` with
    ``r = patch_factor * s``; it is sampled bilinearly (``cv2.remap``, border replicated)
    from the pyramid level whose resolution is closest above the patch's, so that large
    patches are not aliased.

    Returns
    -------
    descriptors : float32 ndarray, shape (F, patch_size ** 2)
        Unit norm (all zeros for a flat patch).
    contrast : float32 ndarray, shape (F,)
        Standard deviation of the grey values of each patch (0-255 scale).
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    n, p = len(points), int(patch_size)
    out = np.zeros((n, p * p), np.float32)
    if n == 0:
        return out, np.zeros(0, np.float32)
    r = patch_factor * points[:, 2]
    # Pyramid level: the level's pixel spacing 2^l must stay <= the patch sample spacing.
    spacing = 2.0 * r / p
    level = np.clip(np.floor(np.log2(np.maximum(spacing, 1.0))), 0, 8).astype(int)
    pyramid = [gray.astype(np.float32)]
    for _ in range(int(level.max())):
        if min(pyramid[-1].shape) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    level = np.minimum(level, len(pyramid) - 1)
    grid = (np.arange(p) + 0.5) / p * 2.0 - 1.0  # sample positions in [-1, 1]
    # cv2.remap maps must have fewer than 32767 rows: chunks of whole patches.
    chunk = max(1, 32000 // p)
    groups = [(lv, idx[lo:lo + chunk]) for lv in np.unique(level)
              for idx in [np.flatnonzero(level == lv)] for lo in range(0, len(idx), chunk)]
    for lv, idx in groups:
        f = 2.0 ** lv
        # Pixel centres: level-l coordinate = (x + 0.5) / 2^l - 0.5.
        cx = (points[idx, 0] + 0.5) / f - 0.5
        cy = (points[idx, 1] + 0.5) / f - 0.5
        rr = r[idx] / f
        mx = (cx[:, None, None] + rr[:, None, None] * grid[None, None, :]) * np.ones((1, p, 1))
        my = (cy[:, None, None] + rr[:, None, None] * grid[None, :, None]) * np.ones((1, 1, p))
        mx = mx.reshape(len(idx) * p, p).astype(np.float32)
        my = my.reshape(len(idx) * p, p).astype(np.float32)
        patches = cv2.remap(pyramid[lv], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[idx] = patches.reshape(len(idx), p * p)
    contrast = out.std(1)
    out -= out.mean(1, keepdims=True)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norm, out=np.zeros_like(out), where=norm > 1e-6)
    return out, contrast.astype(np.float32)


def extract_sift(gray, points, *, patch_factor=2.5):
    """L2-normalised SIFT descriptors at the given points (``cv2.SIFT.compute``).

    The keypoint size is ``2 * patch_factor * scale / 2.5`` so that, for the default
    ``patch_factor``, it equals the DoG keypoint's own size. Points whose descriptor
    OpenCV cannot compute keep a zero row.

    Returns
    -------
    float32 ndarray, shape (F, 128)
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    out = np.zeros((len(points), 128), np.float32)
    if not len(points):
        return out
    kps = [cv2.KeyPoint(float(x), float(y), float(2.0 * s * patch_factor / 2.5), -1.0, 0.0, 0, i)
           for i, (x, y, s) in enumerate(points)]
    # Upright descriptors (angle 0): the ISM votes are not rotation-invariant either.
    for k in kps:
        k.angle = 0.0
    sift = cv2.SIFT_create()
    kps_out, desc = sift.compute(gray, kps)
    if desc is None:
        return out
    ids = np.array([k.class_id for k in kps_out], np.int64)
    norm = np.linalg.norm(desc, axis=1, keepdims=True)
    out[ids] = np.divide(desc, norm, out=np.zeros_like(desc), where=norm > 0)
    return out


def canonical_polarity(desc, patch_size):
    """Flips each zero-mean patch so that its centre is brighter than its surround.

    The sign is that of the patch's correlation with a centred Gaussian blob (sigma a
    quarter of the side): dark-on-light and light-on-dark versions of a shape map to the
    same descriptor. Patches almost orthogonal to the blob may flip either way.
    """
    p = int(patch_size)
    g = np.exp(-((np.arange(p) - (p - 1) / 2) ** 2) / (2 * (p / 4.0) ** 2))
    blob = np.outer(g, g).ravel()
    blob -= blob.mean()
    sign = np.where(desc @ blob.astype(desc.dtype) < 0, -1.0, 1.0).astype(desc.dtype)
    return desc * sign[:, None]


def describe(gray, points, *, descriptor="patch", patch_size=15, patch_factor=2.5, min_contrast=0.0,
             polarity_invariant=False):
    """Descriptors of the points, dropping low-contrast patches.

    With ``polarity_invariant`` (patches only) each patch is flipped by
    :func:`canonical_polarity`.

    Returns
    -------
    points : ndarray, shape (F', 3)
        The kept points.
    descriptors : float32 ndarray, shape (F', D)
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    desc, contrast = extract_patches(gray, points, patch_size=patch_size, patch_factor=patch_factor)
    keep = contrast > min_contrast
    points = points[keep]
    if descriptor == "sift":
        desc = extract_sift(gray, points, patch_factor=patch_factor)
        ok = np.abs(desc).sum(1) > 0
        return points[ok], desc[ok]
    desc = desc[keep]
    if polarity_invariant:
        desc = canonical_polarity(desc, patch_size)
    return points, desc


def box_figure_ground(points, box, *, size=8, patch_factor=2.5):
    """Figure-ground patches from a box: 1 where the patch lies inside the box, else 0.

    The occurrence's top-down segmentation patch when no object mask exists (Leibe et al.
    store the figure-ground mask of the training object under each occurrence).

    Parameters
    ----------
    points : array, shape (F, 3)
    box : array, shape (4,) or (F, 4)
        One box for all points or one per point.

    Returns
    -------
    uint8 ndarray, shape (F, size, size)
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    box = np.broadcast_to(np.asarray(box, np.float64).reshape(-1, 4), (len(points), 4))
    r = patch_factor * points[:, 2]
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    xs = points[:, 0:1] + r[:, None] * grid[None]
    ys = points[:, 1:2] + r[:, None] * grid[None]
    inx = (xs >= box[:, 0:1]) & (xs < box[:, 2:3])
    iny = (ys >= box[:, 1:2]) & (ys < box[:, 3:4])
    return (iny[:, :, None] & inx[:, None, :]).astype(np.uint8)
