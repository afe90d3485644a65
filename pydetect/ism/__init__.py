"""Implicit Shape Model (Leibe, Leonardis & Schiele, IJCV 2008) building blocks.

- :mod:`pydetect.ism.voting`: probabilistic Hough votes and balloon mean-shift (C++);
- :mod:`pydetect.ism.features`: interest points and patch / SIFT descriptors;
- :mod:`pydetect.ism.codebook`: agglomerative (or k-means) codebook with occurrences.

The detector itself is :class:`pydetect.detectors.ImplicitShapeModel`.
"""

from pydetect.ism.voting import accumulate_votes, bin_seeds, mean_shift

__all__ = ["accumulate_votes", "bin_seeds", "mean_shift"]
