"""The cascade model: flat arrays of stages, weak trees, nodes, leaves and features.

A cascade (Viola & Jones, "Rapid object detection using a boosted cascade of simple
features", CVPR 2001) is a sequence of stages; a window passes a stage when the sum of the
leaf values its weak trees reach is at least the stage threshold. OpenCV's layout is kept:

- stage ``s`` has ``stage_num_weak[s]`` weak trees, stored one after the other;
- tree ``t`` has ``weak_num_nodes[t]`` internal nodes and ``weak_num_nodes[t] + 1`` leaves;
- a node holds ``(left, right, feature, threshold)`` for Haar features (go left when the
  normalised feature value is ``< threshold``) or ``(left, right, feature, subset)`` with an
  8 x 32-bit category subset for multi-block LBP features (go left when bit ``code`` is set);
  a child index ``> 0`` is a node of the same tree, ``<= 0`` is leaf ``-index``;
- Haar features have up to three rectangles ``(x, y, w, h)`` with weights, upright or
  tilted by 45 degrees (Lienhart & Maydt, ICIP 2002); LBP features have one block
  rectangle, the 3 x 3 grid of such blocks spanning ``3w x 3h`` (Liao et al., ICB 2007).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pydetect._validation import as_float32_array, as_int32_array, check_int, check_int32, to_numpy
from pydetect.ops import _cascade

__all__ = ["Cascade", "Stage", "WeakTree", "HaarFeature", "LBPFeature"]

FEATURE_TYPES = ("HAAR", "LBP")

# OpenCV XML reading and writing live in pydetect.cascade.xmlio, which builds cascades from
# this module's classes; so the dependency runs xmlio -> model only. xmlio hands its reader
# and writer to ``_register_xml_io`` when it is imported, and ``pydetect.cascade`` imports it,
# so both are in place before any ``Cascade.load`` / ``save`` can run.
_xml_io = None  # (load_cascade(path) -> Cascade, save_cascade(cascade, path) -> None)


def _register_xml_io(load, save) -> None:
    global _xml_io
    _xml_io = (load, save)


def _get_xml_io():
    if _xml_io is None:
        raise RuntimeError("OpenCV XML support is not loaded: import pydetect.cascade")
    return _xml_io


@dataclass(frozen=True)
class HaarFeature:
    """Up to three weighted rectangles ``(x, y, w, h)`` in window pixels.

    ``tilted`` rectangles are rotated by 45 degrees: ``(x, y)`` is the top corner, ``w``
    runs down-right and ``h`` down-left.
    """

    rects: np.ndarray    # (K, 4) int32, K in {2, 3}
    weights: np.ndarray  # (K,) float32
    tilted: bool = False


@dataclass(frozen=True)
class LBPFeature:
    """A multi-block LBP feature: ``rect = (x, y, w, h)`` is the top-left block of 3 x 3."""

    rect: tuple


@dataclass(frozen=True)
class WeakTree:
    """One weak classifier: a tree of ``len(left)`` internal nodes and ``len(left) + 1`` leaves.

    Node ``k`` sends a sample to ``left[k]`` when its test holds, else to ``right[k]``; a
    reference ``> 0`` is a later node, ``<= 0`` is leaf ``-ref`` (a stump: left ``[0]``, right
    ``[-1]``). ``threshold`` holds node thresholds (Haar, and :class:`~pydetect.cascade.AdaBoost`,
    whose test is ``x[feature] < threshold``) and ``subset`` (n_nodes, 8) int32 category bitmasks
    (LBP); the other is empty. A cascade stores leaves as float32, AdaBoost as float64.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    subset: np.ndarray
    leaves: np.ndarray


@dataclass(frozen=True)
class Stage:
    """A boosted stage: passes when the sum of its trees' leaves is >= ``threshold``."""

    threshold: float
    weak: list = field(default_factory=list)


def _rows(arr, name, tail):
    """``arr`` reshaped to (-1,) + tail; an empty array of any shape gives (0,) + tail."""
    if arr.size % int(np.prod(tail)):
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, tail))}), got "
                         f"{tuple(arr.shape)}")
    return arr.reshape((-1,) + tail)


class Cascade:
    """A boosted cascade of Haar or LBP trees, as read from and written to OpenCV XML.

    Build one with :meth:`load` (OpenCV's XML files), :meth:`from_lists` (stages and
    features as Python objects), the flat-array constructor, or stage by stage as a trainer
    does: :meth:`empty`, then :meth:`append_stage` per stage (:meth:`first_stages` cuts one
    back). Every builder returns a new, validated cascade; a cascade is never changed in place.

    Parameters
    ----------
    feature_type : {"HAAR", "LBP"}
    window_size : (int, int)
        ``(width, height)`` of the detection window.
    stage_threshold : (S,) float32
    stage_num_weak : (S,) int32
    weak_num_nodes : (T,) int32
    node_left, node_right, node_feature : (N,) int32
    node_threshold : (N,) float32
        Zeros for LBP.
    node_subset : (N, 8) int32
        Empty ``(N, 0)`` / ``(0, 8)`` for Haar.
    leaves : (N + T,) float32
    rects : (F, 3, 4) int32
        Haar rectangles (unused ones zero) or, for LBP, the block in ``rects[:, 0]``.
    weights : (F, 3) float32
    tilted : (F,) bool

    Attributes
    ----------
    window_size, feature_type, num_stages, stages, features
    """

    def __init__(self, *, feature_type, window_size, stage_threshold, stage_num_weak,
                 weak_num_nodes, node_left, node_right, node_feature, node_threshold,
                 node_subset, leaves, rects, weights, tilted, max_depth=None):
        if feature_type not in FEATURE_TYPES:
            raise ValueError(f"feature_type must be 'HAAR' or 'LBP', got {feature_type!r}")
        try:
            w, h = window_size
        except (TypeError, ValueError):
            raise TypeError(f"window_size must be a (width, height) pair, got "
                            f"{window_size!r}") from None
        # Every array is converted with range checks: a wrapped int32 or a float32 inf
        # would otherwise reach the kernel as a valid-looking value.
        self.feature_type = feature_type
        self.window_size = (check_int32(w, "window_size[0] (width)", minimum=1),
                            check_int32(h, "window_size[1] (height)", minimum=1))
        self.stage_threshold = as_float32_array(stage_threshold, "stage_threshold")
        self.stage_num_weak = as_int32_array(stage_num_weak, "stage_num_weak")
        self.weak_num_nodes = as_int32_array(weak_num_nodes, "weak_num_nodes")
        self.node_left = as_int32_array(node_left, "node_left")
        self.node_right = as_int32_array(node_right, "node_right")
        self.node_feature = as_int32_array(node_feature, "node_feature")
        n = self.node_left.shape[0]
        self.node_threshold = (np.zeros(n, np.float32) if node_threshold is None
                               else as_float32_array(node_threshold, "node_threshold"))
        self.node_subset = (np.zeros((n, 8 if feature_type == "LBP" else 0), np.int32)
                            if node_subset is None else as_int32_array(node_subset, "node_subset"))
        self.leaves = as_float32_array(leaves, "leaves")
        self.rects = _rows(as_int32_array(rects, "rects"), "rects", (3, 4))
        self.weights = _rows(as_float32_array(weights, "weights"), "weights", (3,))
        self.tilted = np.ascontiguousarray(to_numpy(tilted, "tilted")[0], dtype=np.bool_)
        self.max_depth = max_depth
        self._native = None
        self._native_model()  # validates

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lists(cls, feature_type, window_size, stages, features):
        """Builds a cascade from :class:`Stage` / :class:`WeakTree` and feature objects."""
        thr, nweak, nnodes = [], [], []
        left, right, feat, nthr, subs, leaves = [], [], [], [], [], []
        for si, st in enumerate(stages):
            thr.append(st.threshold)
            nweak.append(len(st.weak))
            for ti, t in enumerate(st.weak):
                nnodes.append(len(t.left))
                left.extend(t.left)
                right.extend(t.right)
                feat.extend(t.feature)
                nthr.extend(t.threshold if len(t.threshold) else np.zeros(len(t.left)))
                if feature_type == "LBP":
                    name = f"stage {si} tree {ti} subset"
                    subs.append(_rows(as_int32_array(t.subset, name), name, (8,)))
                leaves.extend(t.leaves)
        f = len(features)
        rects = np.zeros((f, 3, 4), np.int32)
        weights = np.zeros((f, 3), np.float32)
        tilted = np.zeros(f, bool)
        for i, ft in enumerate(features):
            if feature_type == "LBP":
                r = as_int32_array(ft.rect, f"feature {i} rect")
                if r.shape != (4,):
                    raise ValueError(f"feature {i} rect must be (x, y, w, h), got shape "
                                     f"{r.shape}")
                rects[i, 0] = r
                continue
            r = _rows(as_int32_array(ft.rects, f"feature {i} rects"), f"feature {i} rects", (4,))
            wt = as_float32_array(ft.weights, f"feature {i} weights").reshape(-1)
            k = len(r)
            if not 1 <= k <= 3:
                raise ValueError(f"Haar feature {i} must have 1 to 3 rectangles, got {k}")
            if len(wt) != k:
                raise ValueError(f"Haar feature {i} has {k} rectangles but {len(wt)} weights")
            rects[i, :k] = r
            weights[i, :k] = wt
            tilted[i] = bool(ft.tilted)
        subset = np.concatenate(subs) if feature_type == "LBP" and subs else None
        return cls(feature_type=feature_type, window_size=window_size, stage_threshold=thr,
                   stage_num_weak=nweak, weak_num_nodes=nnodes, node_left=left,
                   node_right=right, node_feature=feat, node_threshold=nthr,
                   node_subset=subset, leaves=leaves, rects=rects, weights=weights,
                   tilted=tilted)

    @classmethod
    def empty(cls, feature_type, window_size, max_depth=None):
        """A cascade without stages: it accepts every window a detector scans (for Haar, every
        window that is not flat, see :func:`~pydetect.cascade.flat_windows`). Training starts here;
        ``max_depth`` records the depth of the trees it will add."""
        cascade = cls.from_lists(feature_type, window_size, [], [])
        cascade.max_depth = max_depth
        return cascade

    def append_stage(self, threshold, trees, rects, weights=None, tilted=None) -> "Cascade":
        """This cascade with one more stage.

        Parameters
        ----------
        threshold : float
            The stage passes a window when the sum of its trees' leaves is >= threshold.
        trees : sequence of WeakTree
            The stage's trees (e.g. :attr:`AdaBoost.trees_`), whose ``feature`` entries index the
            rows of ``rects`` / ``weights`` / ``tilted``; leaves are stored as float32.
        rects : (K, 3, 4) int array
            Candidate features in the cascade's flat layout (for LBP, the block in ``rects[:, 0]``).
        weights : (K, 3) float array, optional
            Haar rectangle weights (zeros for LBP, the default).
        tilted : (K,) bool array, optional
            Default all False.

        Returns
        -------
        Cascade
            A new cascade. Only the features the trees use are added; a feature the cascade
            already holds (same rectangles, weights and tilt) is reused, so features keep the
            order in which stages first used them.
        """
        rects = _rows(as_int32_array(rects, "rects"), "rects", (3, 4))
        k = len(rects)
        weights = (np.zeros((k, 3), np.float32) if weights is None
                   else _rows(as_float32_array(weights, "weights"), "weights", (3,)))
        tilted = np.zeros(k, bool) if tilted is None else np.asarray(to_numpy(tilted, "tilted")[0], bool)
        if len(weights) != k or tilted.shape != (k,):
            raise ValueError(f"rects, weights and tilted must describe the same {k} features, got "
                             f"{len(weights)} weights and {tilted.shape[0] if tilted.ndim else 0} tilted flags")
        if not len(trees):
            raise ValueError("a stage needs at least one tree")

        def key(r, w, t):
            return r.tobytes(), w.tobytes(), bool(t)

        index = {}
        for i in range(self.num_features):
            index.setdefault(key(self.rects[i], self.weights[i], self.tilted[i]), i)
        added = []  # rows of rects appended, in order of first use
        left, right, feature, node_threshold, subsets, leaves = [], [], [], [], [], []
        for ti, tree in enumerate(trees):
            for row in np.asarray(tree.feature, np.int64).reshape(-1):
                if not 0 <= row < k:
                    raise ValueError(f"tree {ti} uses feature {row}, outside the {k} given features")
                kk = key(rects[row], weights[row], tilted[row])
                if kk not in index:
                    index[kk] = self.num_features + len(added)
                    added.append(row)
                feature.append(index[kk])
            left.append(np.asarray(tree.left))
            right.append(np.asarray(tree.right))
            node_threshold.append(np.asarray(tree.threshold if len(tree.threshold) else np.zeros(len(tree.left))))
            leaves.append(np.asarray(tree.leaves))
            if self.feature_type == "LBP":
                subsets.append(_rows(as_int32_array(tree.subset, f"tree {ti} subset"), f"tree {ti} subset", (8,)))
        added = np.asarray(added, np.int64)
        return Cascade(
            feature_type=self.feature_type, window_size=self.window_size,
            stage_threshold=np.r_[self.stage_threshold, np.float32(threshold)],
            stage_num_weak=np.r_[self.stage_num_weak, len(trees)],
            weak_num_nodes=np.r_[self.weak_num_nodes, [len(t.left) for t in trees]],
            node_left=np.concatenate([self.node_left, *left]), node_right=np.concatenate([self.node_right, *right]),
            node_feature=np.r_[self.node_feature, feature],
            node_threshold=np.concatenate([self.node_threshold, *node_threshold]),
            node_subset=np.concatenate([self.node_subset, *subsets]) if subsets else None,
            leaves=np.concatenate([self.leaves, *leaves]),
            rects=np.concatenate([self.rects, rects[added]]), weights=np.concatenate([self.weights, weights[added]]),
            tilted=np.concatenate([self.tilted, tilted[added]]), max_depth=self.max_depth)

    def first_stages(self, num_stages) -> "Cascade":
        """The cascade cut to its first ``num_stages`` stages, with only the features they use
        (in their order here): the cascade a training run had after that many stages."""
        k = check_int(num_stages, "num_stages", minimum=0, maximum=self.num_stages)
        trees = int(self.stage_num_weak[:k].sum())
        nodes = int(self.weak_num_nodes[:trees].sum())
        used = np.unique(self.node_feature[:nodes])
        renumber = np.zeros(max(self.num_features, 1), np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        return Cascade(
            feature_type=self.feature_type, window_size=self.window_size, stage_threshold=self.stage_threshold[:k],
            stage_num_weak=self.stage_num_weak[:k], weak_num_nodes=self.weak_num_nodes[:trees],
            node_left=self.node_left[:nodes], node_right=self.node_right[:nodes],
            node_feature=renumber[self.node_feature[:nodes]], node_threshold=self.node_threshold[:nodes],
            node_subset=self.node_subset[:nodes], leaves=self.leaves[:nodes + trees], rects=self.rects[used],
            weights=self.weights[used], tilted=self.tilted[used], max_depth=self.max_depth)

    def to_arrays(self) -> dict:
        """The constructor's keyword arguments (copies): ``Cascade(**c.to_arrays())`` is an
        equal cascade. Model files store a cascade this way."""
        names = ("stage_threshold", "stage_num_weak", "weak_num_nodes", "node_left", "node_right", "node_feature",
                 "node_threshold", "node_subset", "leaves", "rects", "weights", "tilted")
        return dict({name: np.array(getattr(self, name)) for name in names}, feature_type=self.feature_type,
                    window_size=tuple(self.window_size), max_depth=self.max_depth)

    @classmethod
    def load(cls, path):
        """Reads an OpenCV cascade XML file.

        Both the current format (``<cascade type_id="opencv-cascade-classifier">`` with
        ``featureType`` HAAR or LBP) and the old ``opencv-haar-classifier`` format (trees
        of ``left_val``/``left_node`` nodes, e.g. OpenCV 1.x files) are read.

        Raises
        ------
        ValueError
            Naming the file and the reason: not XML, not a cascade, HOG features,
            a stage type other than BOOST, missing or inconsistent fields.
        """
        load, _ = _get_xml_io()
        return load(path)

    def save(self, path):
        """Writes the cascade in OpenCV's current XML format (atomically).

        ``cv2.CascadeClassifier(path)`` loads the file and detects exactly what
        :class:`~pydetect.cascade.CascadeDetector` detects with this cascade.
        """
        _, save = _get_xml_io()
        save(self, path)

    # ------------------------------------------------------------------ views
    @property
    def num_stages(self) -> int:
        return int(self.stage_threshold.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.tilted.shape[0])

    @property
    def max_nodes_per_tree(self) -> int:
        return int(self.weak_num_nodes.max()) if self.weak_num_nodes.size else 0

    @property
    def stages(self) -> list:
        """The stages as :class:`Stage` objects holding :class:`WeakTree` objects."""
        out, t, n, lf = [], 0, 0, 0
        for s in range(self.num_stages):
            weak = []
            for _ in range(int(self.stage_num_weak[s])):
                k = int(self.weak_num_nodes[t])
                sl = slice(n, n + k)
                weak.append(WeakTree(
                    left=self.node_left[sl].copy(), right=self.node_right[sl].copy(),
                    feature=self.node_feature[sl].copy(),
                    threshold=(self.node_threshold[sl].copy() if self.feature_type == "HAAR"
                               else np.zeros(0, np.float32)),
                    subset=(self.node_subset[sl].copy() if self.feature_type == "LBP"
                            else np.zeros((0, 8), np.int32)),
                    leaves=self.leaves[lf:lf + k + 1].copy()))
                t, n, lf = t + 1, n + k, lf + k + 1
            out.append(Stage(float(self.stage_threshold[s]), weak))
        return out

    @property
    def features(self) -> list:
        """The features as :class:`HaarFeature` or :class:`LBPFeature` objects."""
        if self.feature_type == "LBP":
            return [LBPFeature(tuple(int(v) for v in r[0])) for r in self.rects]
        out = []
        for r, w, t in zip(self.rects, self.weights, self.tilted):
            k = 3 if w[2] != 0 else 2
            out.append(HaarFeature(r[:k].copy(), w[:k].copy(), bool(t)))
        return out

    def accepts(self, windows) -> np.ndarray:
        """Whether each window passes every stage, evaluated by the detector's own scan.

        Training asks this of its positives and negatives, so what training counts as
        accepted is exactly what :class:`~pydetect.cascade.CascadeDetector` finds.

        Parameters
        ----------
        windows : (N, h, w) uint8 array
            Windows of the cascade's size (``window_size`` is (w, h)).

        Returns
        -------
        (N,) bool ndarray
            True where the window passes every stage (a Haar window whose pixel standard
            deviation is <= 10 never does, as in OpenCV).
        """
        arr, _ = to_numpy(windows, "windows")
        if arr.dtype != np.uint8:
            raise TypeError(f"windows must be uint8, got dtype {arr.dtype}")
        w, h = self.window_size
        if arr.ndim != 3 or arr.shape[1:] != (h, w):
            raise ValueError(f"windows must have shape (N, {h}, {w}) for a {w}x{h} cascade, "
                             f"got {tuple(arr.shape)}")
        return _cascade.cascade_accepts(self._native_model(), arr)

    def _native_model(self):
        if self._native is None:
            try:
                self._native = _cascade.cascade_model(
                    self.feature_type, self.window_size[0],
                    self.window_size[1], self.stage_threshold, self.stage_num_weak,
                    self.weak_num_nodes, self.node_left, self.node_right, self.node_feature,
                    self.node_threshold, self.node_subset, self.leaves, self.rects, self.weights,
                    self.tilted)
            except ValueError as exc:
                raise ValueError(f"invalid cascade: {exc}") from None
        return self._native

    def __repr__(self):
        return (f"Cascade({self.feature_type}, window={self.window_size[0]}x"
                f"{self.window_size[1]}, stages={self.num_stages}, "
                f"weak={int(self.stage_num_weak.sum())}, features={self.num_features})")
