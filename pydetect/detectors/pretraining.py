"""The ``pretrain`` parameter of the CNN detectors: crop pretraining settings as one object.

Before detection training, a CNN detector's backbone is trained as a (K + 1)-way classifier
of object and background crops of the training set (:mod:`pydetect.engine.pretrain`, the
offline analogue of ImageNet pretraining). Its settings travel together as one parameter,
``pretrain``, holding a :class:`Pretraining` (FastRCNN, FasterRCNN, YOLO, SSD) or a
:class:`WarpPretraining` (RCNN, whose crops are its own warped proposals), or None for no
pretraining. They are scikit-learn parameter groups: ``get_params(deep=True)`` lists
``pretrain__epochs``, ``set_params(pretrain__epochs=5)`` sets one, ``sklearn.base.clone``
copies them.

Model files of state version 1 and older kept the settings as flat parameters
(``pretrain_seconds``, ``pretrain_epochs``, ...): :func:`fold_flat_pretraining` reads them.
"""

from __future__ import annotations

from pydetect._params import Fraction, Int, NonNegative, Parameters, ScaleRange

__all__ = ["Pretraining", "WarpPretraining"]


class _Settings(Parameters):
    """A parameter group: compares by value (a loaded or cloned detector equals the original)."""

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.get_params(deep=False) == self.get_params(deep=False)

    __hash__ = None  # mutable (set_params)


class Pretraining(_Settings):
    """Crop pretraining of a CNN detector's backbone on object and background crops of the
    training set (:func:`pydetect.engine.pretrain_detector_backbone`).

    Detectors built without ``pretrain`` share their class's default object: change one
    detector's settings with ``set_params(pretrain__epochs=...)`` (which copies it) or a new
    ``Pretraining``, not by assigning to ``detector.pretrain.epochs``.

    Parameters
    ----------
    seconds : float >= 0, default 90
        Time budget (0: no pretraining; ignored for a module backbone); 90 s because giving
        pretraining more of the 15-minute budget did not raise AP50 (benchmarks/RESULTS.md,
        "Parameter evidence (moved from the docstrings)").
    epochs : int >= 1, default 30
        Pretraining stops after this many epochs over the crops if the time is not up.
    copies : int >= 1, default 8
        Crops cut around each training object, each with its own box jitter, shift and
        stretch (:func:`pydetect.engine.extract_crops`).
    stretch : (float, float) or None, default (0.75, 1.33)
        Range of the independent x and y stretch of each object crop; the default (with 8
        copies) classified unseen handwriting best of the settings tried and raised AP50
        (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    shear : float in [0, 1], default 0.25
        Each object crop is also slanted by a uniform shear in [-shear, shear] (x shifts by
        that fraction of the height above the box centre), the main variation between
        writers' handwriting (benchmarks/RESULTS.md, "Parameter evidence (moved from the
        docstrings)").

    Examples
    --------
    >>> from pydetect.detectors import FasterRCNN, Pretraining
    >>> det = FasterRCNN(pretrain=Pretraining(seconds=40.0, epochs=15))
    >>> det.set_params(pretrain__copies=4).get_params()["pretrain__copies"]
    4
    """

    _PARAMS = {"seconds": NonNegative(), "epochs": Int(minimum=1), "copies": Int(minimum=1),
               "stretch": ScaleRange(), "shear": Fraction()}

    def __init__(self, *, seconds=90.0, epochs=30, copies=8, stretch=(0.75, 1.33), shear=0.25):
        self.seconds = seconds
        self.epochs = epochs
        self.copies = copies
        self.stretch = stretch
        self.shear = shear


class WarpPretraining(_Settings):
    """R-CNN's pretraining of its backbone on warped crops (ground-truth objects, proposals
    of IoU >= 0.5 with them, background proposals), as cut by :class:`pydetect.detectors.RCNN`
    (:func:`pydetect.engine.pretrain_backbone`).

    Parameters
    ----------
    seconds : float >= 0, default 120
        Time budget (0: no pretraining; ignored for a module backbone).
    epochs : int >= 1, default 40
        Pretraining stops after this many epochs if the time is not up.
    """

    _PARAMS = {"seconds": NonNegative(), "epochs": Int(minimum=1)}

    def __init__(self, *, seconds=120.0, epochs=40):
        self.seconds = seconds
        self.epochs = epochs


def fold_flat_pretraining(params: dict, state: dict, group: type) -> None:
    """Moves the flat ``pretrain_<setting>`` values of a model file of state version 1 or
    older (from ``params``, or from ``state`` where the legacy defaults put them) into one
    ``params["pretrain"]`` of class ``group``, in place."""
    flat = {}
    for setting in group._param_names():
        key = f"pretrain_{setting}"
        for where in (state, params):  # a value the file holds (params) wins over a legacy default
            if key in where:
                flat[setting] = where.pop(key)
    if flat and "pretrain" not in params:
        params["pretrain"] = group(**flat)
