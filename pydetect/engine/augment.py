"""The CNN detectors' ``augment`` parameter, built on :mod:`pydetect.data.transforms`."""

from __future__ import annotations

from pydetect._validation import check_fraction
from pydetect.data.transforms import detection_augmentation

__all__ = ["DEFAULT_AUGMENT", "check_augment", "build_augmentation"]

#: The CNN detectors' default photometric augmentation (``augment="default"``), the keyword
#: arguments of :func:`pydetect.data.transforms.detection_augmentation` besides the geometric
#: ``hflip`` and ``scale_range``, which the detectors' ``hflip`` and ``scale_jitter`` give.
#: Chosen on the digits ``val`` split (benchmarks/RESULTS.md, "honest numbers" and
#: "generalisation screen"): ``recolour`` (a random turn of the colour space on a quarter of
#: the images) is what lets a detector find objects whose colour training never showed
#: (Faster R-CNN at the default budget, val digits in saturated inks: AP50 0.336 without it,
#: 0.485 with it; on val as rendered for training 0.794 and 0.800).
DEFAULT_AUGMENT = {"colour": 0.3, "invert": 0.0, "grey": 0.1, "blur": 0.2, "noise": 0.2, "shear": 0.0,
                   "recolour": 0.25}
_AUGMENT_KEYS = tuple(DEFAULT_AUGMENT)


def check_augment(augment) -> dict | None:
    """The ``augment`` parameter of the CNN detectors as detection_augmentation settings.

    ``"default"`` is :data:`DEFAULT_AUGMENT`; None (or False) turns the photometric steps and
    the shear off; a dict overrides some of the defaults.
    """
    if augment is None or augment is False:
        return None
    if isinstance(augment, str):
        if augment != "default":
            raise ValueError(f"augment must be 'default', None or a dict, got {augment!r}")
        return dict(DEFAULT_AUGMENT)
    if not isinstance(augment, dict):
        raise TypeError(f"augment must be 'default', None or a dict, got {type(augment).__name__}")
    unknown = sorted(set(augment) - set(_AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"augment: unknown setting(s) {unknown}; known: {list(_AUGMENT_KEYS)}")
    settings = {**DEFAULT_AUGMENT, **augment}
    for name, value in settings.items():
        check_fraction(value, f"augment[{name!r}]")
    return settings


def build_augmentation(augment, *, hflip=False, scale_jitter=None, geometric=True):
    """The training augmentation (a :class:`pydetect.data.transforms.Compose`) or None.

    ``geometric=False`` leaves out the steps that change the image size or move boxes (for
    fixed-size crops, whose flips the crop loop does itself).
    """
    settings = check_augment(augment)
    if settings is None:
        settings = dict.fromkeys(_AUGMENT_KEYS, 0.0)
    if not geometric:
        settings["shear"] = 0.0
    pipeline = detection_augmentation(hflip=bool(hflip) and geometric,
                                      scale_range=scale_jitter if geometric else None, **settings)
    return pipeline if pipeline.transforms else None
