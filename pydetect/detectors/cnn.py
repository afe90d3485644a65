"""The fit() every CNN detector shares (OverFeat, the R-CNN family, YOLO, SSD)."""

from __future__ import annotations

from pydetect import engine
from pydetect.detectors.base import BaseDetector

__all__ = ["CNNEstimator"]


class CNNEstimator(BaseDetector):
    """A detector trained by :mod:`pydetect.engine`. ``fit`` checks the dataset and every
    parameter before anything trains, then runs the subclass's
    ``_fit(dataset, class_names, targets, device)`` on the resolved ``device`` with
    ``num_threads`` torch threads."""

    def fit(self, dataset):
        """Checks the dataset and the parameters, then trains (see the class docstring); returns self."""
        class_names, targets = engine.check_detection_dataset(dataset)
        self._check_params()
        device = engine.resolve_device(self.device)
        with engine.torch_threads(self.num_threads):
            return self._fit(dataset, class_names, targets, device)
