"""Viola-Jones cascades: OpenCV XML models (Haar and LBP), a detector with OpenCV's exact
output, grouping, feature drawing, and training (Haar feature bank, AdaBoost, attentional
cascade with hard-negative mining)."""

from pydetect.cascade.model import Cascade, HaarFeature, LBPFeature, Stage, WeakTree
from pydetect.cascade import xmlio  # noqa: F401  (gives Cascade.load / save their XML reader and writer)
from pydetect.cascade.pyramid import pyramid_levels, pyramid_scales
from pydetect.cascade.detector import CascadeDetector, flat_windows
from pydetect.cascade.grouping import group_rectangles
from pydetect.cascade.draw import draw_feature
from pydetect.cascade.haar_features import HaarFeatures
from pydetect.cascade.boosting import AdaBoost
from pydetect.cascade.training import train_cascade

__all__ = ["Cascade", "CascadeDetector", "HaarFeature", "LBPFeature", "Stage", "WeakTree",
           "draw_feature", "flat_windows", "group_rectangles", "pyramid_levels", "pyramid_scales", "HaarFeatures",
           "AdaBoost", "train_cascade"]
