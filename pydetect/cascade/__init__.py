"""Viola-Jones cascades: OpenCV XML models (Haar and LBP), a detector with OpenCV's exact
output, grouping, and feature drawing."""

from pydetect.cascade.model import Cascade, HaarFeature, LBPFeature, Stage, WeakTree
from pydetect.cascade.detector import CascadeDetector, pyramid_scales
from pydetect.cascade.grouping import group_rectangles
from pydetect.cascade.draw import draw_feature

__all__ = ["Cascade", "CascadeDetector", "HaarFeature", "LBPFeature", "Stage", "WeakTree",
           "draw_feature", "group_rectangles", "pyramid_scales"]
