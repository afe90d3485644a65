"""Haar-like feature banks for training cascades (Viola & Jones, CVPR 2001).

A feature is up to three weighted rectangles, the representation of OpenCV's cascade files:
``value = sum_i weight_i * rectsum_i``. The banks enumerate

- ``"basic"``, ``"core"``, ``"all"``: opencv_traincascade's ``-mode BASIC | CORE | ALL`` sets in
  its order (``CvHaarEvaluator::generateFeatures``): the upright Viola-Jones features, plus the
  4-wide lines and the centre-surround feature (CORE), plus Lienhart & Maydt's 45-degree tilted
  features (ALL; "An extended set of Haar-like features for rapid object detection", ICIP 2002).
  A 24x24 window has 162,336 (BASIC), 210,400 (CORE) and 261,600 (ALL) features.
- ``"skimage"``: scikit-image's five types (``type-2-x``, ``type-2-y``, ``type-3-x``,
  ``type-3-y``, ``type-4``) in :func:`skimage.feature.haar_like_feature_coord`'s order, with
  weights that reproduce :func:`skimage.feature.haar_like_feature` exactly.

Values are normalised exactly as the detector normalises them (OpenCV's
``HaarEvaluator::setWindow``): the float32 raw value times the float32
``vnf = 1 / sqrt(A * sum(p^2) - sum(p)^2)`` over the window rectangle ``(1, 1, w - 2, h - 2)``
of area ``A`` (``A`` times the pixel standard deviation), computed by the same C++ code, so a
value is bit-identical to what :class:`~pydetect.cascade.CascadeDetector` compares with a node
threshold on that window at scale 1. Stage thresholds learned on these values are therefore
the ones an OpenCV cascade file holds.
"""

from __future__ import annotations

import numpy as np
import torch

from pydetect._validation import (as_float32_array, as_int32_array, check_choice, check_int, check_int32, check_size,
                                  to_numpy)
from pydetect.ops import _cascade

__all__ = ["HaarFeatures", "FEATURE_TYPE_NAMES", "SKIMAGE_FEATURE_TYPES"]

#: Names of the feature type codes (``HaarFeatures.types``).
FEATURE_TYPE_NAMES = (
    "haar_x2", "haar_y2", "haar_x3", "haar_y3", "haar_x4", "haar_y4", "x2_y2", "point",
    "tilted_haar_x2", "tilted_haar_y2", "tilted_haar_x3", "tilted_haar_y3", "tilted_haar_x4",
    "tilted_haar_y4",
    "type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4",
)
#: scikit-image's feature types, in its FEATURE_TYPE order.
SKIMAGE_FEATURE_TYPES = ("type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4")

_DEFAULT_MAX_BYTES = 1 << 30


def _check_window(window):
    """(height, width), each an int in [1, 2**31 - 1] (the kernels' C ints)."""
    h, w = check_size(window, "window")
    return check_int32(h, "window height"), check_int32(w, "window width")


class HaarFeatures:
    """A bank of Haar-like features over a fixed window size.

    Parameters
    ----------
    window : (int, int) or int, default (24, 24)
        Window ``(height, width)`` in pixels (the shape of the samples ``compute`` takes). The
        enumeration takes windows of at most 16384 pixels (128 x 128) and refuses banks of
        more than 2**24 features (a 64 x 64 window has 13M features in mode "all").
    mode : {"basic", "core", "all", "skimage"}, default "basic"
        Which features: opencv_traincascade's sets or scikit-image's five types.
    feature_types : str or sequence of str, optional
        With ``mode="skimage"`` only: which of :data:`SKIMAGE_FEATURE_TYPES`, enumerated in
        the order given (as scikit-image does).

    Attributes
    ----------
    rects : (F, 3, 4) int32 ndarray
        Rectangles ``(x, y, w, h)`` of each feature; unused slots have weight 0.
    weights : (F, 3) float32 ndarray
        Rectangle weights.
    tilted : (F,) bool ndarray
        Whether a feature's rectangles are OpenCV's 45-degree rotated ones.
    types : (F,) int32 ndarray
        Type codes, names in :data:`FEATURE_TYPE_NAMES`.

    Examples
    --------
    >>> bank = HaarFeatures((24, 24), mode="basic")
    >>> len(bank)
    162336
    """

    def __init__(self, window=(24, 24), mode="basic", feature_types=None):
        self.window = _check_window(window)
        self.mode = check_choice(mode, "mode", ("basic", "core", "all", "skimage"))
        h, w = self.window
        if mode == "skimage":
            if feature_types is None:
                feature_types = SKIMAGE_FEATURE_TYPES
            elif isinstance(feature_types, str):
                feature_types = (feature_types,)
            parts = []
            for t in feature_types:  # skimage enumerates the types in the order given
                check_choice(t, "feature_types", SKIMAGE_FEATURE_TYPES)
                parts.append(_cascade.haar_enumerate_skimage(w, h, t))
            if not parts:
                raise ValueError("feature_types must name at least one type")
            self.feature_types = tuple(feature_types)
            arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            if feature_types is not None:
                raise ValueError("feature_types applies to mode='skimage' only")
            self.feature_types = None
            arrays = _cascade.haar_enumerate_opencv(w, h, mode)
        self.rects = arrays["rects"]
        self.weights = arrays["weights"]
        self.tilted = arrays["tilted"].astype(bool)
        self.types = arrays["types"]

    @classmethod
    def from_arrays(cls, window, rects, weights, tilted) -> "HaarFeatures":
        """A bank of given features (e.g. those of a trained cascade).

        Parameters
        ----------
        window : (int, int)
            ``(height, width)``.
        rects : (F, 3, 4) int array of ``(x, y, w, h)``
        weights : (F, 3) float array (0 marks an unused rectangle)
        tilted : (F,) bool array
        """
        bank = object.__new__(cls)
        bank.window = _check_window(window)
        bank.mode, bank.feature_types = "custom", None
        bank.rects = as_int32_array(rects, "rects")
        f = bank.rects.size // 12
        if bank.rects.shape not in ((f, 3, 4), (0,)):
            raise ValueError(f"rects must have shape (F, 3, 4), got {bank.rects.shape}")
        bank.rects = bank.rects.reshape(f, 3, 4)
        bank.weights = as_float32_array(weights, "weights")
        if bank.weights.shape != (f, 3):
            raise ValueError(f"weights must have shape ({f}, 3) to match rects, got "
                             f"{bank.weights.shape}")
        bank.tilted = np.ascontiguousarray(to_numpy(tilted, "tilted")[0], dtype=bool)
        if bank.tilted.shape != (f,):
            raise ValueError(f"tilted must have shape ({f},) to match rects, got "
                             f"{bank.tilted.shape}")
        try:
            _cascade.haar_check_features(bank.rects, bank.weights, bank.tilted,
                                   bank.window[1], bank.window[0])
        except ValueError as exc:
            raise ValueError(f"rects and weights: {exc}") from None
        bank.types = np.full(f, -1, np.int32)
        return bank

    # ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.rects.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features F."""
        return len(self)

    def __repr__(self) -> str:
        return f"HaarFeatures(window={self.window}, mode={self.mode!r}) with {len(self)} features"

    def subset(self, indices) -> "HaarFeatures":
        """A bank holding only the features ``indices`` (in that order)."""
        idx = self._check_indices(indices)
        other = object.__new__(HaarFeatures)
        other.window, other.mode, other.feature_types = self.window, self.mode, self.feature_types
        other.rects = np.ascontiguousarray(self.rects[idx])
        other.weights = np.ascontiguousarray(self.weights[idx])
        other.tilted = np.ascontiguousarray(self.tilted[idx])
        other.types = np.ascontiguousarray(self.types[idx])
        return other

    def _check_indices(self, indices):
        idx, _ = to_numpy(indices, "features")
        if idx.dtype.kind not in "iu" and not (idx.size == 0):
            raise TypeError(f"features must hold integer indices, got dtype {idx.dtype}")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"feature indices must lie in [0, {len(self)}), got values in "
                             f"[{idx.min()}, {idx.max()}]")
        return idx

    def to_opencv(self, index) -> dict:
        """Feature ``index`` as OpenCV's cascade file stores it.

        Returns
        -------
        dict
            ``{"rects": [(x, y, w, h, weight), ...], "tilted": bool}`` with 2 or 3 rectangles.
        """
        i = int(self._check_indices([index])[0])
        rects = [tuple(int(v) for v in self.rects[i, k]) + (float(self.weights[i, k]),)
                 for k in range(3) if self.weights[i, k] != 0]
        return {"rects": rects, "tilted": bool(self.tilted[i])}

    def type_names(self, indices=None) -> list:
        """Type names of the features (all, or ``indices``)."""
        types = self.types if indices is None else self.types[self._check_indices(indices)]
        return [FEATURE_TYPE_NAMES[t] if t >= 0 else "custom" for t in types]

    # ------------------------------------------------------------------------------
    def _as_windows(self, windows):
        arr, kind = to_numpy(windows, "windows")
        if arr.dtype != np.uint8:
            raise TypeError(f"windows must be uint8 (grey levels 0-255), got dtype {arr.dtype}; "
                            "convert float images with np.rint(img * 255).astype(np.uint8)")
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != self.window:
            raise ValueError(f"windows must have shape (N, {self.window[0]}, {self.window[1]}) "
                             f"to match window={self.window}, got {tuple(arr.shape)}; "
                             "crop or resize the samples to the window size first")
        return np.ascontiguousarray(arr), kind

    def compute(self, windows, normalize=True, features=None, max_bytes=_DEFAULT_MAX_BYTES):
        """Feature values of each window.

        Parameters
        ----------
        windows : (N, h, w) or (h, w) uint8 array or tensor
            Grey sample windows of exactly the bank's window size.
        normalize : bool, default True
            Multiply by the detector's variance-normalisation factor
            ``float32(1 / (A * std))`` over the rectangle ``(1, 1, w - 2, h - 2)`` of area ``A``
            (0 when that rectangle is constant), giving exactly the value the cascade detector compares
            with a node threshold. The detector also rejects windows with ``std <= 10``; their
            values are still computed here.
            False gives the raw weighted rectangle-sum differences (with ``mode="skimage"``,
            equal to :func:`skimage.feature.haar_like_feature`).
        features : array of int, optional
            Compute only these feature indices (columns in that order).
        max_bytes : int, default 1 GiB
            Refuse to allocate a result larger than this; use :meth:`iter_compute` to process
            the windows in chunks instead.

        Returns
        -------
        (N, F) float32 ndarray (or tensor, if given one)
            Values; exact for ``normalize=False`` while the sums fit float32's 24-bit mantissa
            (windows up to 256 x 256 pixels).
        """
        arr, kind = self._as_windows(windows)
        rects, weights, tilted = self._arrays(features)
        nbytes = arr.shape[0] * rects.shape[0] * 4
        max_bytes = check_int(max_bytes, "max_bytes", minimum=1)
        if nbytes > max_bytes:
            raise ValueError(f"the result would take {nbytes / 2**20:.0f} MiB > max_bytes = "
                             f"{max_bytes / 2**20:.0f} MiB; pass fewer windows or features, raise "
                             "max_bytes, or iterate with iter_compute(windows, chunk_bytes=...)")
        out = _cascade.haar_compute(arr, rects, weights, tilted, normalize)
        if kind == "torch":

            return torch.from_numpy(out)
        return out

    def iter_compute(self, windows, normalize=True, features=None, chunk_bytes=256 << 20):
        """Yields ``(start, values)`` for consecutive chunks of windows.

        Each ``values`` is the (n_chunk, F) float32 block of :meth:`compute` for windows
        ``start:start + n_chunk``, with ``n_chunk * F * 4 <= chunk_bytes`` (at least one window).
        """
        arr, _ = self._as_windows(windows)
        rects, weights, tilted = self._arrays(features)
        chunk_bytes = check_int(chunk_bytes, "chunk_bytes", minimum=1)
        per_window = max(rects.shape[0] * 4, 1)
        step = max(chunk_bytes // per_window, 1)
        for start in range(0, arr.shape[0], step):
            yield start, _cascade.haar_compute(arr[start:start + step], rects, weights, tilted, normalize)

    def _arrays(self, features):
        if features is None:
            return self.rects, self.weights, self.tilted.view(np.uint8)
        idx = self._check_indices(features)
        return (np.ascontiguousarray(self.rects[idx]), np.ascontiguousarray(self.weights[idx]),
                np.ascontiguousarray(self.tilted[idx]).view(np.uint8))
