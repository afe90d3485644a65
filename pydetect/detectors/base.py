"""The estimator protocol every detector follows (scikit-learn style).

- ``__init__`` takes keyword-only parameters and stores them unchanged;
- ``fit(dataset)`` validates, learns, sets attributes ending in ``_`` and returns ``self``;
- ``predict(image) -> Detections``; ``predict_batch(images) -> list[Detections]``;
- ``save(path)`` / ``Detector.load(path)``: a saved and loaded model predicts exactly the same.
"""

from __future__ import annotations

import inspect
import pickle

from pydetect._io import atomic_write

__all__ = ["BaseDetector", "NotFittedError"]

_FORMAT_VERSION = 1


def _detector_class(name, path):
    """The detector class a model file names; only pydetect's own classes are accepted."""
    import importlib

    module, _, qualname = str(name).rpartition(".")
    if not module.startswith("pydetect.") or not qualname:
        raise ValueError(f"{path}: names the class {name!r}, which is not a pydetect detector")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        raise ValueError(f"{path}: names the class {name!r}, which this pydetect does not have") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseDetector)):
        raise ValueError(f"{path}: {name!r} is not a pydetect detector")
    return cls


class NotFittedError(ValueError, AttributeError):
    """Raised when ``predict`` or ``save`` is called before ``fit``."""


class BaseDetector:
    """Base class: parameters, fitted-state checks, batch prediction and persistence.

    Subclasses implement ``fit`` and ``predict``. The default persistence pickles the
    instance's ``__dict__`` (parameters and fitted ``*_`` attributes; torch modules pickle
    their tensors); override ``_get_state`` / ``_set_state`` when that is not enough.
    """

    @classmethod
    def _param_defaults(cls) -> dict:
        signature = inspect.signature(cls.__init__)
        return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}

    @classmethod
    def _param_names(cls) -> list:
        return list(cls._param_defaults())

    def get_params(self) -> dict:
        """The constructor parameters as given (a model saved before a parameter existed
        reports that parameter's default)."""
        defaults = self._param_defaults()
        return {name: getattr(self, name, defaults[name]) for name in defaults}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

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
        return dict(vars(self))

    def _set_state(self, state: dict) -> None:
        vars(self).update(state)

    def save(self, path) -> None:
        """Saves the fitted detector to ``path`` (written atomically)."""
        self._check_fitted()
        payload = {"format": _FORMAT_VERSION,
                   "class": f"{type(self).__module__}.{type(self).__qualname__}",
                   "state": self._get_state()}
        with atomic_write(path, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path):
        """Loads a detector saved by :meth:`save`.

        Called on a subclass, the file must hold that class; called on ``BaseDetector``, it
        returns whichever pydetect detector the file holds.

        Only load files you trust: the format is pickle.
        """
        try:
            with open(path, "rb") as f:
                payload = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ValueError(f"{path}: not a pydetect model file ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT_VERSION:
            raise ValueError(f"{path}: not a pydetect model file of format {_FORMAT_VERSION}")
        expected = f"{cls.__module__}.{cls.__qualname__}"
        if cls is BaseDetector:  # any pydetect detector: the file names its class
            cls = _detector_class(payload.get("class"), path)
        elif payload["class"] != expected:
            raise ValueError(f"{path} holds a {payload['class']}, not a {expected}")
        obj = cls.__new__(cls)
        obj._set_state(payload["state"])
        return obj
