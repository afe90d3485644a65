"""Detectors with one estimator API: ``Detector(**params).fit(dataset).predict(image)``."""

from pydetect.detectors.base import BaseDetector, NotFittedError
from pydetect.detectors.ism import ImplicitShapeModel
from pydetect.detectors.viola_jones import ViolaJonesDetector

__all__ = ["BaseDetector", "NotFittedError", "ImplicitShapeModel", "ViolaJonesDetector"]

# ---- R-CNN family (issue 7)
from pydetect.detectors.fast_rcnn import FastRCNN  # noqa: E402
from pydetect.detectors.faster_rcnn import FasterRCNN  # noqa: E402
from pydetect.detectors.rcnn import RCNN  # noqa: E402

__all__ += ["RCNN", "FastRCNN", "FasterRCNN"]

# ---- the CNN sliding window (issue 21)
from pydetect.detectors.overfeat import OverFeat  # noqa: E402

__all__ += ["OverFeat"]

# ---- one-stage detectors (issue 20)
from pydetect.detectors.ssd import SSD  # noqa: E402
from pydetect.detectors.yolo import YOLO  # noqa: E402

__all__ += ["YOLO", "SSD"]
