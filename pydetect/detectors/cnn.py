"""The fit() every CNN detector shares (OverFeat, the R-CNN family, YOLO, SSD), and the
parameter specs they have in common."""

from __future__ import annotations

import torch

from pydetect import engine
from pydetect._params import Bool, Check, Instance, Int, NonNegative, Optional, Path, Positive, Real, ScaleRange
from pydetect._validation import MAX_THREADS, check_device
from pydetect.detectors.base import BaseDetector
from pydetect.detectors.pretraining import fold_flat_pretraining

__all__ = ["CNNEstimator", "END_TO_END_PARAMS", "MODULE"]


def _check_augment(value, name):
    return engine.check_augment(value)


def _check_device(value, name):
    return check_device(value, name)


#: A backbone given as a module (a model file keeps its weights, not its code).
MODULE = Instance(torch.nn.Module, "a torch.nn.Module")

#: The settings of the end-to-end training of the R-CNN family and the one-stage detectors
#: (:func:`pydetect.engine.train_loop`), merged into their tables.
END_TO_END_PARAMS = {
    "train_seconds": Positive(),
    "max_iter": Int(minimum=1),
    "batch_size": Int(minimum=1),
    "lr": Positive(),
    "ema_decay": Optional(Real(0, 1, closed="neither")),
    "weight_decay": NonNegative(),
    "detections_per_img": Int(minimum=1),
    "scale_jitter": ScaleRange(),
}


class CNNEstimator(BaseDetector):
    """A detector trained by :mod:`pydetect.engine`. ``fit`` checks the dataset and every
    parameter before anything trains, then runs the subclass's
    ``_fit(dataset, class_names, targets, device)`` on the resolved ``device`` with
    ``num_threads`` torch threads."""

    _PARAMS = {
        "hflip": Bool(),
        "augment": Check(_check_augment, "'default', None or a dict of augmentation settings"),
        "seed": Int(minimum=0),
        "checkpoint_dir": Optional(Path()),
        "resume": Bool(),
        "progress": Bool(),
        "num_threads": Optional(Int(minimum=1, maximum=MAX_THREADS)),
        "device": Check(_check_device, "'cpu', 'cuda', 'cuda:N' or a torch.device"),
    }

    @classmethod
    def _upgrade(cls, params, state, version):
        """Files of state version 1 and older kept the crop-pretraining settings as flat
        ``pretrain_*`` parameters: they become the ``pretrain`` group."""
        params, state = super()._upgrade(params, state, version)
        default = cls._param_defaults().get("pretrain")
        if version < 2 and default is not None:
            fold_flat_pretraining(params, state, type(default))
        return params, state

    #: Whether ``fit`` takes a ``val_dataset`` (then ``_fit`` takes it as a keyword).
    _EVALUATES_DURING_TRAINING = False

    def _crop_pretrain(self, body, dataset, num_classes, device, **options):
        """The detectors' crop pretraining of ``body`` with ``self.pretrain``
        (:func:`pydetect.engine.pretrain_detector_backbone`, ``options`` passed on); sets
        ``pretrain_accuracy_`` and ``pretrain_epochs_`` and returns the crop classifier's layer."""
        pre, reached = self.pretrain, {}
        self.pretrain_accuracy_, crop_fc = engine.pretrain_detector_backbone(
            body, dataset, num_classes, seconds=pre.seconds, epochs=pre.epochs, copies=pre.copies,
            stretch=pre.stretch, shear=pre.shear, hflip=self.hflip, augment=self.augment, seed=self.seed,
            progress=self.progress, resume=self.resume, checkpoint_dir=self.checkpoint_dir, device=device,
            stats=reached, **options)
        self.pretrain_epochs_ = reached.get("epochs")
        return crop_fc

    def fit(self, dataset, val_dataset=None):
        """Checks the dataset and the parameters, then trains (see the class docstring); returns self.

        ``val_dataset``: where the detector supports it (FastRCNN, FasterRCNN), a dataset with
        the same ``class_names`` scored during training (see their ``eval_every``)."""
        class_names, targets = engine.check_detection_dataset(dataset)
        extra = {}
        if val_dataset is not None:
            if not self._EVALUATES_DURING_TRAINING:
                raise TypeError(f"{type(self).__name__}.fit takes no val_dataset: evaluate the fitted detector "
                                "instead (FastRCNN and FasterRCNN evaluate one during training)")
            val_names, _ = engine.check_detection_dataset(val_dataset)
            if list(val_names) != list(class_names):
                raise ValueError(f"val_dataset must have the training set's class_names in the same order: "
                                 f"got {list(val_names)} for {list(class_names)}")
            extra["val_dataset"] = val_dataset
        self._validate_params()
        device = engine.resolve_device(self.device)
        with engine.torch_threads(self.num_threads):
            return self._fit(dataset, class_names, targets, device, **extra)
