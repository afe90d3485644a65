"""Detectors with one estimator API: ``Detector(**params).fit(dataset).predict(image)``.

Classical: :class:`ViolaJonesDetector` (boosted Haar / LBP cascades), :class:`ImplicitShapeModel`.
CNN, on the training layer :mod:`pydetect.engine`: :class:`OverFeat` (the dense sliding window),
the R-CNN family (:class:`RCNN`, :class:`FastRCNN`, :class:`FasterRCNN`) and the one-stage
:class:`YOLO` and :class:`SSD`. Their crop-pretraining settings are one parameter,
``pretrain``: a :class:`Pretraining` (:class:`WarpPretraining` for RCNN) or None.
"""

from pydetect.detectors.base import BaseDetector, NotFittedError
from pydetect.detectors.fast_rcnn import FastRCNN
from pydetect.detectors.faster_rcnn import FasterRCNN
from pydetect.detectors.ism import ImplicitShapeModel
from pydetect.detectors.overfeat import OverFeat
from pydetect.detectors.pretraining import Pretraining, WarpPretraining
from pydetect.detectors.rcnn import RCNN
from pydetect.detectors.ssd import SSD
from pydetect.detectors.viola_jones import ViolaJonesDetector
from pydetect.detectors.yolo import YOLO

__all__ = ["BaseDetector", "NotFittedError", "ViolaJonesDetector", "ImplicitShapeModel", "OverFeat", "RCNN",
           "FastRCNN", "FasterRCNN", "YOLO", "SSD", "Pretraining", "WarpPretraining"]
