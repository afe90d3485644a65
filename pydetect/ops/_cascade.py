"""The native kernels of :mod:`pydetect.cascade`: Haar feature banks, AdaBoost, cascade scan
and rectangle grouping.

Private wrappers of ``pydetect._C``. :mod:`pydetect.cascade` validates the inputs (with the
messages users see); these convert each array once to the dtype and C-contiguous layout
the kernel reads and map names to the native enums. Shape letters: F features, N windows
or samples, K rectangles.
"""

from __future__ import annotations

import numpy as np

from pydetect import _C

__all__ = ["HAAR_MODES", "SKIMAGE_TYPES", "BOOST_ALGORITHMS", "CASCADE_FEATURE_TYPES",
           "haar_enumerate_opencv", "haar_enumerate_skimage", "haar_check_features", "haar_compute",
           "booster", "boosted_decision", "cascade_model", "cascade_accepts", "cascade_flat_windows", "cascade_scan",
           "cascade_detect", "cascade_group", "resize_linear_exact"]

#: opencv_traincascade's feature sets.
HAAR_MODES = {"basic": _C.HaarMode.BASIC, "core": _C.HaarMode.CORE, "all": _C.HaarMode.ALL}
#: scikit-image's feature types, in its order.
SKIMAGE_TYPES = {"type-2-x": _C.HaarSkimageType.TYPE_2_X, "type-2-y": _C.HaarSkimageType.TYPE_2_Y,
                 "type-3-x": _C.HaarSkimageType.TYPE_3_X, "type-3-y": _C.HaarSkimageType.TYPE_3_Y,
                 "type-4": _C.HaarSkimageType.TYPE_4}
#: AdaBoost variants (opencv_traincascade's -bt DAB | RAB | GAB).
BOOST_ALGORITHMS = {"discrete": _C.BoostAlgorithm.DISCRETE, "real": _C.BoostAlgorithm.REAL,
                    "gentle": _C.BoostAlgorithm.GENTLE}
#: Cascade feature types as OpenCV's XML names them.
CASCADE_FEATURE_TYPES = {"HAAR": _C.CascadeFeatureType.HAAR, "LBP": _C.CascadeFeatureType.LBP}


def _c(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _flags(tilted) -> np.ndarray:
    """(F,) bool or integer flags -> contiguous uint8 (a bool array is viewed, not copied)."""
    t = np.ascontiguousarray(tilted)
    return t.view(np.uint8) if t.dtype == np.bool_ else t.astype(np.uint8, copy=False)


# ----------------------------------------------------------------------------- Haar features
# A bank crosses the boundary as arrays: rects (F, 3, 4) int32 (x, y, w, h), weights (F, 3)
# float32 (0 = unused slot), tilted (F,) uint8, and from the enumerations types (F,) int32.

def haar_enumerate_opencv(width: int, height: int, mode: str) -> dict:
    """opencv_traincascade's features of a ``width`` x ``height`` window, ``mode`` a key of
    :data:`HAAR_MODES` -> dict of ``rects``, ``weights``, ``tilted`` (uint8), ``types``."""
    return _C.haar_enumerate_opencv(int(width), int(height), HAAR_MODES[mode])


def haar_enumerate_skimage(width: int, height: int, feature_type: str) -> dict:
    """scikit-image's features of one type (a key of :data:`SKIMAGE_TYPES`), in
    ``haar_like_feature_coord``'s order -> dict as :func:`haar_enumerate_opencv`."""
    return _C.haar_enumerate_skimage(int(width), int(height), SKIMAGE_TYPES[feature_type])


def haar_check_features(rects, weights, tilted, width: int, height: int) -> None:
    """Raises ValueError unless every weighted rectangle lies inside the window and every
    weight is finite. rects (F, 3, 4) int32, weights (F, 3) float32, tilted (F,) bool."""
    _C.haar_check_features(_c(rects, np.int32), _c(weights, np.float32), _flags(tilted), int(width), int(height))


def haar_compute(windows, rects, weights, tilted, normalize: bool) -> np.ndarray:
    """Feature values (N, F) float32 of uint8 windows (N, h, w); ``normalize`` multiplies by
    the detector's variance-normalisation factor."""
    return _C.haar_compute(_c(windows, np.uint8), _c(rects, np.int32), _c(weights, np.float32), _flags(tilted),
                           bool(normalize))


# ----------------------------------------------------------------------------- boosting

def booster(X, signs, sample_weight, algorithm: str, max_depth: int, weight_trim_rate: float):
    """The native AdaBoost state over presorted features.

    Parameters
    ----------
    X : (N, F) float32
    signs : (N,) int8 in {-1, +1}
    sample_weight : (N,) float64 or None (uniform)
    algorithm : a key of :data:`BOOST_ALGORITHMS`

    Returns
    -------
    pydetect._C.Booster
        ``add_tree()`` runs one round and returns ``(left, right, feature, threshold,
        leaves)``; ``scores`` and ``weights`` are the (N,) float64 training state.
    """
    w = None if sample_weight is None else _c(sample_weight, np.float64)
    return _C.Booster(_c(X, np.float32), _c(signs, np.int8), w, BOOST_ALGORITHMS[algorithm], int(max_depth),
                      float(weight_trim_rate))


def boosted_decision(X, trees) -> np.ndarray:
    """(N,) float64: the sum of ``trees`` (each with ``left``, ``right``, ``feature``,
    ``threshold``, ``leaves`` in OpenCV's layout) on each row of X (N, F) float32. ValueError
    for a malformed tree (a child reference back or out of range, a feature outside X)."""
    flat = [(_c(t.left, np.int32), _c(t.right, np.int32), _c(t.feature, np.int32), _c(t.threshold, np.float32),
             _c(t.leaves, np.float64)) for t in trees]
    return _C.boosted_decision(_c(X, np.float32), flat)


# ----------------------------------------------------------------------------- cascades

def cascade_model(feature_type: str, window_width: int, window_height: int, stage_threshold, stage_num_weak,
                  weak_num_nodes, node_left, node_right, node_feature, node_threshold, node_subset, leaves,
                  rects, weights, tilted):
    """A validated native copy of a cascade's flat arrays (ValueError if inconsistent).

    ``feature_type`` is ``"HAAR"`` or ``"LBP"``. Float arrays (thresholds, leaves, weights)
    are float32, the others int32, ``tilted`` bool; multi-dimensional ones are flattened in
    C order (``node_subset`` (nodes, 8), ``rects`` (F, 3, 4), ``weights`` (F, 3)).
    """
    i32, f32 = np.int32, np.float32
    return _C.CascadeModel(
        CASCADE_FEATURE_TYPES[feature_type], int(window_width), int(window_height), _c(stage_threshold, f32),
        _c(stage_num_weak, i32), _c(weak_num_nodes, i32), _c(node_left, i32), _c(node_right, i32),
        _c(node_feature, i32), _c(node_threshold, f32), _c(node_subset, i32).reshape(-1), _c(leaves, f32),
        _c(rects, i32).reshape(-1), _c(weights, f32).reshape(-1), _flags(tilted))


def _pyramid(levels, scales):
    return [_c(level, np.uint8) for level in levels], [float(s) for s in scales]


def cascade_accepts(model, windows) -> np.ndarray:
    """(N,) bool: whether each uint8 window (N, h, w) of the model's size passes every stage."""
    return _C.cascade_accepts(model, _c(windows, np.uint8))


def cascade_flat_windows(windows) -> np.ndarray:
    """(N,) bool: whether each uint8 window (N, h, w) is flat by the Haar detector's rule."""
    return _C.cascade_flat_windows(_c(windows, np.uint8))


def cascade_scan(model, levels, scales):
    """The raw windows that pass every stage of pyramid ``levels`` (uint8 (h, w) images,
    the image shrunk by ``1 / scale``) -> ((N, 3) int32 (level index, x, y in that level's
    pixels), (N,) float64 last stage sums, int number of window positions scanned)."""
    return _C.cascade_scan(model, *_pyramid(levels, scales))


def cascade_detect(model, image, sizes, scales, width: int, height: int, min_neighbors: int, eps: float):
    """Scan the pyramid of a uint8 (H, W) ``image`` (level k: the image resized to
    ``sizes[k]`` = (w, h), as ``cv2.resize`` with ``INTER_LINEAR_EXACT``, shrunk by
    ``1 / scales[k]``; the levels are resized in the scan's parallel pass), group
    (``cv2.groupRectangles``) and clip to the ``width`` x ``height`` image -> (rects (K, 4)
    int32 xywh, neighbours (K,) int32, reject levels (K,) int32, stage sums (K,) float64)."""
    return _C.cascade_detect(model, _c(image, np.uint8), [(int(w), int(h)) for w, h in sizes],
                             [float(s) for s in scales], int(width), int(height), int(min_neighbors), float(eps))


def resize_linear_exact(image, width: int, height: int) -> np.ndarray:
    """A uint8 (H, W) image resized to (height, width), bit-identical to ``cv2.resize`` with
    ``INTER_LINEAR_EXACT`` (the kernel :func:`cascade_detect` builds its levels with)."""
    return _C.resize_linear_exact(_c(image, np.uint8), int(width), int(height))


def cascade_group(rects, levels, weights, min_neighbors: int, eps: float):
    """``cv2.groupRectangles`` of (N, 4) int32 xywh rectangles with (N,) int32 reject levels
    and (N,) float64 weights -> (rects (K, 4), neighbours (K,), levels (K,), weights (K,))."""
    return _C.cascade_group(_c(rects, np.int32), _c(levels, np.int32), _c(weights, np.float64),
                            int(min_neighbors), float(eps))
