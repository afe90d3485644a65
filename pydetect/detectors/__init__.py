"""Detectors with one estimator API: ``Detector(**params).fit(dataset).predict(image)``."""

from pydetect.detectors.base import BaseDetector, NotFittedError

__all__ = ["BaseDetector", "NotFittedError"]
