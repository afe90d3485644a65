"""Detectors with one estimator API: ``Detector(**params).fit(dataset).predict(image)``."""

from pydetect.detectors.base import BaseDetector, NotFittedError
from pydetect.detectors.ism import ImplicitShapeModel
from pydetect.detectors.viola_jones import ViolaJonesDetector

__all__ = ["BaseDetector", "NotFittedError", "ImplicitShapeModel", "ViolaJonesDetector"]
