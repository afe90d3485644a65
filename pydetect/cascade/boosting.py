"""AdaBoost of stumps and depth-2 trees over presorted features, in C++.

Three variants, as opencv_traincascade's ``-bt DAB | RAB | GAB``:

- ``"discrete"``: Freund & Schapire (1997). Each tree votes +-1 per leaf; the tree is scaled by
  ``c = log((1 - err) / err)`` and misclassified samples' weights by ``exp(c)``.
- ``"real"``: Schapire & Singer (1999). Leaves output smoothed half log-odds
  ``0.5 log((W+ + eps) / (W- + eps))`` with eps = 1 / (2 N) (their advice: of the order of
  1 / N; OpenCV's 1e-5 lets a leaf's weight explode); splits minimise ``Z = 2 sum sqrt(W+ W-)``.
- ``"gentle"`` (default, as OpenCV): Friedman, Hastie & Tibshirani (2000). Leaves output the
  weighted mean of y in {-1, +1}; splits minimise the weighted squared error.

All three update ``w_i <- w_i exp(-y_i f(x_i))`` (normalised). Before each round the lightest
samples holding ``1 - weight_trim_rate`` of the weight are left out of the tree's fit (OpenCV's
weight trimming; they keep their weights). A split sends ``x < threshold`` left, with the
threshold halfway between consecutive distinct values, exactly as OpenCV's trees and cascade
files evaluate it. There is no randomness: the result depends only on the data (ties go to the
lowest feature index, then the lowest threshold), whatever the thread count.
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import (as_float_array, check_choice, check_fraction, check_int,
                                  to_numpy)
from pydetect.cascade.model import WeakTree
from pydetect.ops import _cascade

__all__ = ["AdaBoost"]

_ALGORITHMS = tuple(_cascade.BOOST_ALGORITHMS)


def _as_features(X, name="X"):
    arr, _ = to_numpy(X, name)
    if arr.dtype.kind not in "biuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_features), got {tuple(arr.shape)}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (found NaN or infinite values)")
    return arr


def _as_labels(y, n):
    """(n,) labels: numbers, booleans or strings ((n, 1) is taken as (n,)); float labels must
    be finite (NaN != NaN would put a sample in no class)."""
    arr, _ = to_numpy(y, "y")
    if arr.dtype.kind not in "biufUS":
        raise TypeError(f"y must hold numbers, booleans or strings, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"y must have one label per row of X, shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("y must hold finite labels, got NaN or infinite values")
    return arr


class AdaBoost:
    """Boosted stumps or depth-2 trees (scikit-learn-like classifier).

    Parameters
    ----------
    n_estimators : int, default 100
        Number of boosting rounds for :meth:`fit`.
    algorithm : {"gentle", "discrete", "real"}, default "gentle"
    max_depth : {1, 2}, default 1
        Stumps or depth-2 trees.
    weight_trim_rate : float, default 0.95
        Fraction of the weight the fitted samples must hold; 0 or 1 disables trimming.

    Attributes
    ----------
    classes_ : (2,) ndarray
        The labels; ``classes_[1]`` is the positive class (scores > 0).
    trees_ : list of WeakTree
        In OpenCV's layout, ready for :meth:`Cascade.append_stage`: node ``k`` goes left when
        ``x[feature[k]] < threshold[k]``; float64 leaves.
    train_scores_ : (N,) float64 ndarray
        Sum of the trees on the training samples.
    sample_weight_ : (N,) float64 ndarray
        Boosting weights after the last round.

    Notes
    -----
    Memory: the features are presorted once, 8 bytes per value (F x N float32 values and
    uint32 sample indices). Each round costs one scan of the sorted values per feature,
    parallel over features.
    """

    def __init__(self, n_estimators=100, *, algorithm="gentle", max_depth=1, weight_trim_rate=0.95):
        self.n_estimators = n_estimators
        self.algorithm = algorithm
        self.max_depth = max_depth
        self.weight_trim_rate = weight_trim_rate

    def _check_params(self):
        check_int(self.n_estimators, "n_estimators", minimum=1)
        check_choice(self.algorithm, "algorithm", tuple(_ALGORITHMS))
        if check_int(self.max_depth, "max_depth", minimum=1) > 2:
            raise ValueError(f"max_depth must be 1 or 2, got {self.max_depth}")
        return check_fraction(self.weight_trim_rate, "weight_trim_rate")

    def _start(self, X, y, sample_weight):
        rate = self._check_params()
        X = _as_features(X)
        y_arr = _as_labels(y, X.shape[0])
        classes = np.unique(y_arr)
        if classes.size != 2:
            raise ValueError(f"y must hold exactly two classes, got {classes.size} ({classes[:5]})")
        if X.shape[1] == 0:
            raise ValueError("X must have at least one feature")
        signs = np.where(y_arr == classes[1], 1, -1).astype(np.int8)
        w = None
        if sample_weight is not None:
            w, _ = as_float_array(sample_weight, "sample_weight", dtype=np.float64)
            if w.shape != (X.shape[0],):
                raise ValueError(f"sample_weight must have shape ({X.shape[0]},), got {w.shape}")
            # the kernel divides by the sum: an overflowing one (1e308 + 1e308) zeroes them all
            with np.errstate(over="ignore"):
                total = w.sum()
            if (w < 0).any() or not 0 < total < np.inf:
                raise ValueError("sample_weight must be >= 0, not all 0, with a finite sum")
        self.classes_ = classes
        self.trees_ = []
        self._booster = _cascade.booster(X, signs, w, self.algorithm, int(self.max_depth), rate)
        self.train_scores_ = np.zeros(X.shape[0])
        self.sample_weight_ = self._booster.weights
        self.n_features_in_ = X.shape[1]

    def _step(self):
        left, right, feature, threshold, leaves = self._booster.add_tree()
        self.trees_.append(WeakTree(left, right, feature, threshold, np.zeros((0, 8), np.int32), leaves))
        self.train_scores_ = self._booster.scores
        self.sample_weight_ = self._booster.weights

    def fit(self, X, y, sample_weight=None):
        """Boosts ``n_estimators`` trees.

        Parameters
        ----------
        X : (N, F) array of real numbers (computed in float32)
        y : (N,) array with two distinct labels (numbers, booleans or strings; finite)
        sample_weight : (N,) array, optional
            Initial weights, >= 0 with a positive finite sum (default uniform).

        Returns
        -------
        self
        """
        for _ in self.iter_fit(X, y, sample_weight):
            pass
        return self

    def iter_fit(self, X, y, sample_weight=None, max_estimators=None):
        """Boosts one tree at a time, yielding ``self`` after each (cascade stages stop early).

        ``max_estimators`` (default ``n_estimators``) bounds the number of rounds. The presorted
        features are released when the generator finishes or is closed.
        """
        self._start(X, y, sample_weight)
        total = self.n_estimators if max_estimators is None else check_int(
            max_estimators, "max_estimators", minimum=1)
        try:
            for _ in range(total):
                self._step()
                yield self
        finally:
            self._booster = None

    # ------------------------------------------------------------------------------
    def _check_fitted(self):
        if not getattr(self, "trees_", None):
            raise ValueError("this AdaBoost is not fitted yet: call fit(X, y) first")

    def _prepare(self, X):
        self._check_fitted()
        X = _as_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return X

    def decision_function(self, X) -> np.ndarray:
        """Sum of the trees, (N,) float64 (in C++, with the trees' own float32 comparisons); > 0
        means ``classes_[1]``. On the training samples it equals ``train_scores_``."""
        return _cascade.boosted_decision(self._prepare(X), self.trees_)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        pred = self.predict(X)
        return float(np.mean(pred == _as_labels(y, len(pred))))
