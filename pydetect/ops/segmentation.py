"""Image segmentation and region proposals: Felzenszwalb's graph segmentation and
selective search, both in C++ with the GIL released.

References
----------
.. [1] P. F. Felzenszwalb and D. P. Huttenlocher, "Efficient Graph-Based Image
   Segmentation", IJCV 59(2), 2004.
.. [2] J. R. R. Uijlings, K. E. A. van de Sande, T. Gevers and A. W. M. Smeulders,
   "Selective Search for Object Recognition", IJCV 104(2), 2013.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pydetect import _C
from pydetect._validation import (as_image, check_choice, check_int, check_positive, like,
                                  to_numpy)

__all__ = ["felzenszwalb", "selective_search", "MAX_SIZE", "MAX_GAUSSIAN_SIGMA", "SELECTIVE_SEARCH_MODES"]

#: Largest smoothing ``sigma`` of :func:`felzenszwalb`: a Gaussian radius of 4000 pixels
#: (the kernel's value, ``csrc/segmentation/filters.h``).
MAX_GAUSSIAN_SIGMA = _C.MAX_GAUSSIAN_SIGMA

#: Longest image side selective search works at by default; larger images are shrunk
#: (area averaging) to it and the boxes mapped back. The paper's images (PASCAL VOC) are
#: about 500 px.
MAX_SIZE = 512

# The C++ kernel's colour spaces and similarity terms (colour, texture, size, fill).
_SPACES = {"HSV": _C.ColorSpace.HSV, "Lab": _C.ColorSpace.LAB, "rgI": _C.ColorSpace.RGI, "H": _C.ColorSpace.H,
           "I": _C.ColorSpace.I}
_TERMS = {"C": _C.SimilarityTerm.COLOUR, "T": _C.SimilarityTerm.TEXTURE, "S": _C.SimilarityTerm.SIZE,
          "F": _C.SimilarityTerm.FILL}
_STRATEGIES = {name: [_TERMS[t] for t in name] for name in ("CTSF", "TSF", "F", "S")}

#: The diversification sets of the paper (IJCV 2013, §5.2): colour spaces x Felzenszwalb
#: k x similarity strategies. sigma = 0.8 and min component size = k throughout.
SELECTIVE_SEARCH_MODES = {
    "single": (("HSV",), (100,), ("CTSF",)),
    "fast": (("HSV", "Lab"), (50, 100), ("CTSF", "TSF")),
    "quality": (("HSV", "Lab", "rgI", "H", "I"), (50, 100, 150, 300), ("CTSF", "TSF", "F", "S")),
}


def _float_image(image, name="image"):
    """(H, W) or (H, W, C) image -> float32 on the [0, 1] scale, and the input kind."""
    arr, kind = to_numpy(image, name)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise TypeError(f"{name} must be a uint8 or float image, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {tuple(arr.shape)}")
    if min(arr.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite")
        return np.ascontiguousarray(arr, dtype=np.float32), kind
    if arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"an integer {name} must lie in [0, 255], got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr, dtype=np.float32) / np.float32(255.0), kind


def felzenszwalb(image, scale: float = 1.0, sigma: float = 0.8, min_size: int = 20):
    """Graph-based segmentation of Felzenszwalb and Huttenlocher [1]_.

    The image is smoothed by a Gaussian (``sigma``); pixels are joined on an 8-neighbour
    grid graph whose edge weights are the Euclidean colour distances. Edges are visited by
    increasing weight and two components merge when the weight is below
    ``min(Int(C1) + tau(C1), Int(C2) + tau(C2))``, with ``Int`` the largest weight inside a
    component and ``tau(C) = k / |C|``. Components smaller than ``min_size`` are then
    merged with a neighbour. Parameters mean what they mean in
    ``skimage.segmentation.felzenszwalb``, which gives the same segmentation up to the
    order of equal edge weights (segment counts within 1% on skimage's sample photos), 3-7
    times slower on 2 cores.

    Parameters
    ----------
    image : array or Tensor, shape (H, W) or (H, W, C)
        uint8 (or integer in [0, 255]) image, or a float image on the [0, 1] scale
        (taken as is). Every channel enters the colour distance.
    scale : float > 0
        ``k`` of the paper for intensities on the 0..255 scale: larger gives larger
        segments.
    sigma : float in [0, MAX_GAUSSIAN_SIGMA]
        Standard deviation of the Gaussian smoothing (0: none). Kernel radius
        ``int(4 sigma + 0.5)``, borders reflected as in ``scipy.ndimage``; at most
        :data:`MAX_GAUSSIAN_SIGMA` (1000: a 4000-pixel radius), which bounds the kernel's
        size and cost.
    min_size : int >= 0
        Minimum component size, enforced by post-processing.

    Returns
    -------
    labels : int32 array or Tensor, shape (H, W)
        Segment labels ``0..n-1``, numbered in raster order of first appearance.
    """
    img, kind = _float_image(image)
    scale = check_positive(scale, "scale")
    sigma = check_positive(sigma, "sigma", strict=False)
    if sigma > MAX_GAUSSIAN_SIGMA:
        raise ValueError(f"sigma must be <= MAX_GAUSSIAN_SIGMA ({MAX_GAUSSIAN_SIGMA:g}), got {sigma:g}")
    # Sizes above the pixel count all mean "merge everything": clamped, any int is fine.
    min_size = min(check_int(min_size, "min_size", minimum=0), img.shape[0] * img.shape[1])
    return like(_C.felzenszwalb(img, scale, sigma, min_size), kind)


def selective_search(image, mode: str = "fast", seed: int = 0, max_boxes=None, min_size=None,
                     max_size: int = MAX_SIZE, scales=None):
    """Object proposals by selective search [2]_.

    Felzenszwalb segmentations [1]_ of the image in several colour spaces and at several
    ``k`` are grouped bottom-up: the two neighbouring regions with the highest similarity
    merge until one region is left, and every region of every hierarchy gives a box. The
    similarity sums, depending on the strategy, colour (histogram intersection of 25-bin
    per-channel histograms, L1-normalised), texture (8 orientations of Gaussian
    derivatives, sigma = 1, 10 bins per orientation and channel), size
    (``1 - (|a| + |b|) / |image|``) and fill (``1 - (|box(a, b)| - |a| - |b|) / |image|``).
    Histograms of a merged region are the size-weighted mean of its parts'.

    Modes, as in the paper (colour spaces x k x strategies, C colour, T texture, S size,
    F fill):

    - ``"single"``: HSV x {100} x {C+T+S+F}: 1 hierarchy.
    - ``"fast"``: {HSV, Lab} x {50, 100} x {C+T+S+F, T+S+F}: 8 hierarchies.
    - ``"quality"``: {HSV, Lab, rgI, H, I} x {50, 100, 150, 300} x
      {C+T+S+F, T+S+F, F, S}: 80 hierarchies.

    ``scales`` and ``min_size`` replace the mode's ``k`` values and the minimum component
    size. OpenCV-contrib's ``cv2.ximgproc.segmentation`` has the same colour spaces and
    strategies but other segmentation parameters: ``switchToSingleStrategy()`` is
    ``mode="single", scales=(200,), min_size=100``, ``switchToSelectiveSearchFast()`` is
    ``mode="fast", scales=(150, 300, 450), min_size=100`` and
    ``switchToSelectiveSearchQuality()`` is ``mode="quality", scales=(150, 300, 450, 600,
    750), min_size=100`` (``benchmarks/bench_proposals.py`` compares the two this way).

    Ranking: each region gets its position in its hierarchy (1 = the last merge, the
    whole image) times a uniform random number; boxes of all hierarchies are sorted by
    that value, exact duplicates dropped (the better-ranked kept). The random numbers come
    from ``seed`` alone, so the output is deterministic and does not depend on the thread
    count. Hierarchies run in parallel (``pydetect.set_num_threads``) with the GIL released.

    Parameters
    ----------
    image : array or Tensor, shape (H, W) or (H, W, 3)
        RGB (or grey, replicated to RGB) uint8 image, or a float image in [0, 1].
    mode : {"single", "fast", "quality"}
    seed : int >= 0
        Seed of the random part of the ranking.
    max_boxes : int >= 0 or None
        Keep at most this many best-ranked boxes (None: all).
    min_size : int >= 1 or None
        Minimum Felzenszwalb component size in pixels of the working image; None uses
        ``k`` (the paper's choice).
    max_size : int >= 1
        Images whose longer side exceeds this are shrunk (area averaging) to it before the
        search and the boxes are mapped back to the input's pixels. Default
        :data:`MAX_SIZE` (512).
    scales : sequence of float > 0, or None
        Felzenszwalb ``k`` values (``scale`` of :func:`felzenszwalb`, intensities on the
        0..255 scale), one segmentation per value and colour space. None uses the mode's
        (the paper's).

    Returns
    -------
    boxes : float32 array or Tensor, shape (N, 4)
        ``(x1, y1, x2, y2)`` boxes inside the image (``x2 - x1`` is the width), best-ranked
        first.
    """
    mode = check_choice(mode, "mode", tuple(SELECTIVE_SEARCH_MODES))
    _, kind = to_numpy(image, "image")
    img = as_image(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    seed = check_int(seed, "seed", minimum=0)
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    # Counts beyond the boxes or pixels there can be mean "all": clamped, any int is fine.
    max_boxes = -1 if max_boxes is None else min(check_int(max_boxes, "max_boxes", minimum=0), 2**63 - 1)
    min_size = 0 if min_size is None else min(check_int(min_size, "min_size", minimum=1), img.shape[0] * img.shape[1])
    max_size = check_int(max_size, "max_size", minimum=1)
    if max_size > 65535:
        raise ValueError(f"max_size must be <= 65535, got {max_size}")
    spaces, ks, strategies = SELECTIVE_SEARCH_MODES[mode]
    if scales is not None:
        if isinstance(scales, (str, bytes)) or not isinstance(scales, (Sequence, np.ndarray)):
            raise TypeError(f"scales must be a sequence of numbers or None, got {type(scales).__name__}")
        if len(scales) == 0:
            raise ValueError("scales must not be empty")
        ks = [check_positive(k, f"scales[{i}]") for i, k in enumerate(scales)]
    boxes = _C.selective_search(np.ascontiguousarray(img), [_SPACES[s] for s in spaces],
                                [float(k) for k in ks], [_STRATEGIES[s] for s in strategies],
                                min_size, 0.8, seed, max_size, max_boxes)
    return like(boxes, kind)
