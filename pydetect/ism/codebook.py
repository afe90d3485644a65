"""The ISM codebook: clustered local appearance plus where each entry occurred on objects.

Glossary: N training descriptors, D descriptor length, E entries, F test features,
M matches, O occurrences.

Clustering follows Leibe et al. (IJCV 2008, sec. 3.1): agglomerative clustering with
average linkage, merging while the average similarity of two clusters stays above a
cut-off — normalised grey-level correlation (NGC) ``t`` for patches (cosine distance
``1 - t`` on zero-mean unit-norm patches), Euclidean distance ``t`` for SIFT. Average link
needs all pairwise distances, O(N^2) memory, so above ``max_agglomerative`` descriptors the
clusters of a random subset of that size seed a k-means over all descriptors (the
scalable fallback).
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

__all__ = ["build_codebook", "match", "similarity_to_distance"]


def similarity_to_distance(threshold: float, metric: str) -> float:
    """The distance cut-off: ``1 - NGC`` for ``"ngc"``, the distance itself for ``"euclidean"``."""
    return 1.0 - threshold if metric == "ngc" else threshold


def _agglomerative(desc, metric, threshold):
    if len(desc) == 1:
        return np.zeros(1, np.int64)
    model = AgglomerativeClustering(n_clusters=None, linkage="average",
                                    metric="cosine" if metric == "ngc" else "euclidean",
                                    distance_threshold=similarity_to_distance(threshold, metric))
    return model.fit_predict(desc).astype(np.int64)


def _centres(desc, labels, n, metric):
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    sums = np.zeros((n, desc.shape[1]))
    np.add.at(sums, labels, desc)
    c = sums / np.maximum(counts, 1)[:, None]
    if metric == "ngc":
        c -= c.mean(1, keepdims=True)
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        c = np.divide(c, norm, out=np.zeros_like(c), where=norm > 1e-12)
    return c.astype(np.float32), counts


def build_codebook(descriptors, *, metric="ngc", threshold=0.7, max_agglomerative=3000,
                   min_entry_size=2, random_state=0):
    """Clusters descriptors into codebook entries.

    Parameters
    ----------
    descriptors : float array, shape (N, D)
        Zero-mean unit-norm patches (``metric="ngc"``) or SIFT vectors (``"euclidean"``).
    metric : {"ngc", "euclidean"}
    threshold : float
        Clusters merge while their average NGC is >= threshold (or average Euclidean
        distance <= threshold).
    max_agglomerative : int
        Above this many descriptors: agglomerative clustering of a random subset of this
        size, then k-means (``sklearn.cluster.KMeans``, initialised at those centres, one
        run) over all descriptors.
    min_entry_size : int
        Clusters with fewer members are dropped (noise).
    random_state : int

    Returns
    -------
    centres : float32 ndarray, shape (E, D)
    sizes : ndarray, shape (E,)
        Members per entry.
    """
    desc = np.asarray(descriptors, np.float32)
    if desc.ndim != 2 or len(desc) == 0:
        raise ValueError(f"need a non-empty (N, D) array of descriptors, got shape {desc.shape}")
    rng = np.random.default_rng(random_state)
    if len(desc) <= max_agglomerative:
        labels = _agglomerative(desc, metric, threshold)
        n = int(labels.max()) + 1
    else:

        subset = desc[rng.choice(len(desc), max_agglomerative, replace=False)]
        sub_labels = _agglomerative(subset, metric, threshold)
        init, _ = _centres(subset, sub_labels, int(sub_labels.max()) + 1, metric)
        km = KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=20, random_state=random_state)
        labels = km.fit_predict(desc).astype(np.int64)
        n = len(init)
    centres, counts = _centres(desc, labels, n, metric)
    keep = counts >= min_entry_size
    if not keep.any():
        keep = counts > 0
    return centres[keep], counts[keep]


def match(descriptors, centres, *, metric="ngc", threshold=0.7, max_matches=10, chunk=4096):
    """Activated entries of each descriptor: NGC >= threshold (or distance <= threshold).

    Each feature activates at most ``max_matches`` entries (the most similar) and, as in
    Leibe et al., ``p(entry | feature)`` is uniform over the activated entries.

    Returns
    -------
    match_ptr : int64 ndarray, shape (F + 1,)
    match_entry : int64 ndarray, shape (M,)
    match_weight : float64 ndarray, shape (M,)
    """
    desc = np.asarray(descriptors, np.float32)
    centres = np.asarray(centres, np.float32)
    n = len(desc)
    entries, counts = [], np.zeros(n, np.int64)
    k = min(int(max_matches), len(centres))
    c2 = (centres.astype(np.float64) ** 2).sum(1)
    for lo in range(0, n, chunk):
        d = desc[lo:lo + chunk]
        if k == 0 or len(d) == 0:
            continue
        dot = d @ centres.T
        if metric == "ngc":
            score = dot
            ok = score >= threshold
        else:
            score = -np.sqrt(np.maximum((d.astype(np.float64) ** 2).sum(1)[:, None] + c2[None] - 2 * dot, 0))
            ok = -score <= threshold
        if k < len(centres):
            top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(len(centres)), (len(d), len(centres)))
        # Sort the top-k by decreasing similarity, entry index breaking ties.
        sc = np.take_along_axis(score, top, 1)
        order = np.lexsort((top, -sc), axis=1)
        top = np.take_along_axis(top, order, 1)
        okk = np.take_along_axis(ok, top, 1)
        counts[lo:lo + len(d)] = okk.sum(1)
        entries.append(top[okk])
    match_entry = np.concatenate(entries).astype(np.int64) if entries else np.zeros(0, np.int64)
    match_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    match_weight = np.repeat(1.0 / np.maximum(counts, 1), counts)
    return match_ptr, match_entry, match_weight
