"""The estimator protocol every detector follows (scikit-learn style).

- ``__init__`` takes keyword-only parameters and stores them unchanged;
- ``fit(dataset)`` validates, learns, sets attributes ending in ``_`` and returns ``self``;
- ``predict(image) -> Detections``; ``predict_batch(images) -> list[Detections]``;
- ``save(path)`` / ``Detector.load(path)``: a saved and loaded model predicts exactly the same.

Model files (format 2)
----------------------
A model file is a zip archive (:mod:`pydetect._persist`) of ``header.json`` and
``arrays/<i>.npy``; loading it never unpickles anything. The header holds

- ``"format"``: 2; ``"pydetect"``: the version that wrote it;
- ``"class"``: the detector's class name, one of :data:`DETECTORS` (any other is refused);
- ``"params"``: :meth:`BaseDetector.get_params` (``deep=False``), as tagged JSON (tuples,
  paths and arrays survive), a parameter group such as ``pretrain`` as the dict of its
  settings (rebuilt on load from the class's ``_PARAMS`` spec); ``"modules"``: the names of parameters given as torch modules (a custom
  ``backbone``), stored as ``null``: code is not data, so :meth:`BaseDetector.load` needs the
  module again (``FasterRCNN.load(path, backbone=MyNet())``) and fills in its weights; a
  ``device`` given as a torch.device is stored as its name (``"cuda:0"``);
- ``"state"``: the fitted state, as each class maps it to plain values in ``_get_state``
  (arrays, tensors such as torch ``state_dict``s, JSON scalars, lists and dicts) and back
  in ``_set_state``;
- ``"state_version"``: the class's ``_STATE_VERSION`` when it was written (absent: 0).

Older files are upgraded on load, in one place (:meth:`BaseDetector._upgrade`): a parameter
or fitted attribute that did not exist when a file was written takes the value in the
class's ``_LEGACY_VALUES``, the one that reproduces how that model was trained and run
(not necessarily today's default), so that no code needs ``getattr`` fallbacks.

Format 1, written by pydetect 0.1.0, pickled the instance: ``load(path, allow_pickle=True)``
still reads it, but unpickling runs whatever code the file names, so only do that for files
you trust, and save them again in format 2.
"""

from __future__ import annotations

import importlib
import pickle
import sys

import pydetect
from pydetect._params import Parameters, _restore_groups
from pydetect._persist import decode, encode, is_zip_file, read_archive, write_archive

__all__ = ["BaseDetector", "NotFittedError", "DETECTORS"]

_FORMAT_VERSION = 2
_PICKLE_FORMAT_VERSION = 1

#: The detector classes a model file may name (class name -> module). A new detector is
#: added here to become loadable; a file naming any other class is refused.
DETECTORS = {
    "ViolaJonesDetector": "pydetect.detectors.viola_jones",
    "ImplicitShapeModel": "pydetect.detectors.ism",
    "RCNN": "pydetect.detectors.rcnn",
    "FastRCNN": "pydetect.detectors.fast_rcnn",
    "FasterRCNN": "pydetect.detectors.faster_rcnn",
    "OverFeat": "pydetect.detectors.overfeat",
    "YOLO": "pydetect.detectors.yolo",
    "SSD": "pydetect.detectors.ssd",
}


def _detector_class(name, path):
    """The class of :data:`DETECTORS` called ``name``; ValueError for any other name."""
    if not isinstance(name, str) or name not in DETECTORS:
        raise ValueError(f"{path}: names the class {name!r}, which is not one of pydetect's detectors "
                         f"({', '.join(DETECTORS)})")
    return getattr(importlib.import_module(DETECTORS[name]), name)


def _is_module(value) -> bool:
    torch = sys.modules.get("torch")  # no module can exist before torch is imported
    return torch is not None and isinstance(value, torch.nn.Module)


def _is_device(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.device)


class NotFittedError(ValueError, AttributeError):
    """Raised when ``predict`` or ``save`` is called before ``fit``."""


class BaseDetector(Parameters):
    """Base class: parameters, fitted-state checks, batch prediction and persistence.

    Subclasses implement ``fit`` and ``predict`` and declare every constructor parameter in
    ``_PARAMS`` (:mod:`pydetect._params`); ``fit`` calls :meth:`_validate_params` first.
    The default persistence stores the parameters and the fitted ``*_`` attributes as they are; a class whose fitted state holds
    objects (torch modules, cascades, scikit-learn models) overrides ``_get_state`` /
    ``_set_state`` to map them to arrays, tensors and JSON values (see the module docstring).
    """

    #: The version of this class's parameters and fitted state, written to model files; bump
    #: it when one is added or changes meaning, and say in ``_LEGACY_VALUES`` (or an override
    #: of :meth:`_upgrade`) what older files mean.
    _STATE_VERSION = 1
    #: Parameter or fitted attribute -> its meaning in a file written before it existed.
    _LEGACY_VALUES: dict = {}

    @classmethod
    def _upgrade(cls, params: dict, state: dict, version: int):
        """(params, state) of a file of state ``version`` as this version of the class reads
        them: anything the file predates (holds nowhere) takes its ``_LEGACY_VALUES`` entry.
        Subclasses that renamed or regrouped a parameter extend it."""
        params, state = dict(params), dict(state)
        if version < cls._STATE_VERSION:
            names = cls._param_defaults()
            for name, value in cls._LEGACY_VALUES.items():
                if name not in params and name not in state:
                    (params if name in names else state)[name] = value
        return params, state

    @classmethod
    def _restore_params(cls, params: dict) -> dict:
        """Upgraded file parameters as the constructor takes them (groups rebuilt)."""
        return _restore_groups(cls, params)

    def _fitted_attributes(self) -> list:
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]

    def _check_fitted(self) -> None:
        if not self._fitted_attributes():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(dataset) first")

    def predict(self, image):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_batch(self, images) -> list:
        """Predicts each image of a sequence; returns a list of Detections."""
        return [self.predict(image) for image in images]

    # Persistence --------------------------------------------------------------------
    def _get_state(self) -> dict:
        """The fitted state as plain values (see the module docstring); override when a
        fitted attribute is an object (a torch module, a model of another library)."""
        return {k: getattr(self, k) for k in self._fitted_attributes()}

    def _set_state(self, state: dict) -> None:
        """Restores what :meth:`_get_state` returned, on an instance built from the parameters."""
        vars(self).update(state)

    def _set_pickled_state(self, state: dict) -> None:
        """Restores the instance ``__dict__`` that format 1 pickled (already upgraded: every
        parameter is there)."""
        vars(self).update(state)

    def save(self, path) -> None:
        """Saves the fitted detector to ``path`` (a model file of format 2, written atomically).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        TypeError
            A parameter or fitted attribute of a type a model file cannot hold (named).
        """
        self._check_fitted()
        name = type(self).__name__
        if DETECTORS.get(name) != type(self).__module__:
            raise TypeError(f"{type(self).__module__}.{name} is not in pydetect.detectors.base.DETECTORS: "
                            "add it there to save it")

        params = self.get_params(deep=False)
        modules = [k for k, v in params.items() if _is_module(v)]
        params.update(dict.fromkeys(modules))
        params.update({k: str(v) for k, v in params.items() if _is_device(v)})
        # A parameter group (pretrain=Pretraining(...)) is stored as the dict of its settings.
        params.update({k: v.get_params(deep=False) for k, v in params.items() if isinstance(v, Parameters)})
        arrays = []
        header = {"format": _FORMAT_VERSION, "pydetect": pydetect.__version__, "class": name,
                  "params": encode(params, arrays, "parameter"), "modules": modules,
                  "state": encode(self._get_state(), arrays, "fitted state"),
                  "state_version": self._STATE_VERSION}
        write_archive(path, header, arrays)

    @classmethod
    def load(cls, path, *, allow_pickle=False, device=None, **modules):
        """Loads a detector saved by :meth:`save`.

        Called on a subclass, the file must hold that class; called on ``BaseDetector``, it
        returns whichever pydetect detector the file holds.

        Parameters
        ----------
        path : path
        allow_pickle : bool, default False
            Also read format 1 (pydetect 0.1.0's pickles). UNSAFE: unpickling a file can
            run any code it names; only for files you trust.
        device : "cpu", "cuda", "cuda:N" or torch.device, optional
            For the CNN detectors: run on this device instead of the saved one (a model
            trained on a GPU, used on a CPU). The weights load on the CPU and move to the
            device at the first prediction, where the device is checked.
        **modules : torch.nn.Module
            The parameters the detector was built with as torch modules (e.g. a custom
            ``backbone``): the file keeps their weights, not their code.

        Raises
        ------
        ValueError
            Not a model file, a class outside :data:`DETECTORS`, another class than ``cls``,
            a pickle without ``allow_pickle``, missing / unexpected ``modules``, or a
            ``device`` for a detector without one.
        """
        if not is_zip_file(path):
            if allow_pickle:
                return cls._with_device(cls._load_pickle(path), device, path)
            raise ValueError(f"{path}: not a pydetect model file of format {_FORMAT_VERSION} (a zip archive). "
                             f"Files of format {_PICKLE_FORMAT_VERSION} (pydetect 0.1.0) are pickles, which can "
                             "run code when loaded: if you trust this one, load it with allow_pickle=True "
                             "and save it again")
        header, arrays = read_archive(path)
        if header.get("format") != _FORMAT_VERSION:
            raise ValueError(f"{path}: model file format {header.get('format')!r}, this pydetect reads "
                             f"format {_FORMAT_VERSION}")
        found = cls._check_class(_detector_class(header.get("class"), path), path)
        saved_modules = header.get("modules", [])
        if not (isinstance(saved_modules, list) and all(isinstance(m, str) for m in saved_modules)):
            raise ValueError(f"{path}: malformed header (modules {saved_modules!r})")
        if sorted(modules) != sorted(saved_modules):
            raise ValueError(f"{path}: the {found.__name__} was saved with the torch module parameters "
                             f"{saved_modules}: pass exactly those to load (got {sorted(modules)}); "
                             "the file holds their weights, not their code")
        version = header.get("state_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= found._STATE_VERSION:
            raise ValueError(f"{path}: state version {version!r} of a {found.__name__}; this pydetect reads "
                             f"versions 0 to {found._STATE_VERSION} (a newer pydetect wrote it?)")
        try:
            params, state = found._upgrade(decode(header.get("params", {}), arrays),
                                           decode(header.get("state", {}), arrays), version)
            obj = found(**dict(found._restore_params(params), **modules))
            obj._set_state(state)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
            detail = " ".join(str(exc).split())  # torch's load_state_dict errors span lines
            raise ValueError(f"{path}: a {found.__name__} model file that cannot be restored ({detail})") from None
        return cls._with_device(obj, device, path)

    @staticmethod
    def _with_device(obj, device, path):
        """``obj`` with its ``device`` parameter set to ``device`` (None: as saved)."""
        if device is not None:
            if "device" not in obj._param_defaults():
                raise ValueError(f"{path}: a {type(obj).__name__} has no device parameter (only the CNN "
                                 "detectors do)")
            obj.device = device
        return obj

    @classmethod
    def _check_class(cls, found, path):
        if cls is not BaseDetector and found is not cls:
            raise ValueError(f"{path} holds a {found.__name__}, not a {cls.__name__}")
        return found

    @classmethod
    def _load_pickle(cls, path):
        """Format 1: a pickled ``{"format": 1, "class": "module.Name", "state": __dict__}``."""
        try:
            with open(path, "rb") as f:
                payload = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as exc:
            raise ValueError(f"{path}: not a pydetect model file ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != _PICKLE_FORMAT_VERSION:
            raise ValueError(f"{path}: not a pydetect model file of format {_PICKLE_FORMAT_VERSION} or "
                             f"{_FORMAT_VERSION}")
        module, _, name = str(payload.get("class")).rpartition(".")
        found = cls._check_class(_detector_class(name, path), path)
        if module != DETECTORS[name]:
            raise ValueError(f"{path}: names the class {payload.get('class')!r}, not pydetect's {name}")
        pickled = dict(payload["state"])
        names = found._param_defaults()
        params, state = found._upgrade({k: v for k, v in pickled.items() if k in names},
                                       {k: v for k, v in pickled.items() if k not in names}, 0)
        obj = found.__new__(found)
        obj._set_pickled_state({**names, **found._restore_params(params), **state})  # the constructor's defaults under the rest
        return obj
