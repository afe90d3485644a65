"""Declarative parameter specifications: what each estimator parameter may hold.

Every estimator (and every group of settings such as
:class:`pydetect.detectors.Pretraining`) declares its parameters in a class attribute
``_PARAMS``: a dict from parameter name to a *spec*, a small object that checks one value::

    class OverFeat(CNNEstimator):
        _PARAMS = {
            "window": Int(minimum=1, maximum=256),
            "context": Real(1, 4),
            "merge": Choice("greedy", "nms"),
            "ema_decay": Optional(Real(0, 1, closed="neither")),
            ...
        }

The tables of a class and of its bases are merged along the MRO (a subclass entry replaces
its base's), and :meth:`Parameters._validate_params` checks every constructor parameter
against the merged table before ``fit`` does any work; a rule that involves several
parameters (FasterRCNN's ``anchors`` against ``anchor_sizes``) goes in the class's
:meth:`Parameters._check_param_combinations`, which runs after the table.

A spec's ``check(value, name)`` returns the value (normalised: a float for a ``Real``) or
raises ``TypeError`` (wrong type) or ``ValueError`` (right type, bad value) with a message
that starts with the parameter's name: ``"lr must be > 0, got -1.0"``. ``describe()`` gives
the part after "must be", so that wrappers (:class:`Optional`, :class:`OneOf`,
:class:`Sequence`) compose the messages of what they wrap.

Spec kinds
----------
:class:`Int`, :class:`Real` (and the shorthands :func:`Positive`, :func:`NonNegative`,
:func:`Fraction`), :class:`Bool`, :class:`Choice`, :class:`Path`, :class:`ScaleRange`,
:class:`Sequence`, :class:`Instance`, :class:`Group` (a nested :class:`Parameters` object),
:class:`Optional` (None or another spec), :class:`OneOf` (the first of several specs that
accepts the value) and :class:`Check` (a named function, for the few parameters whose rule
fits none of the others).
"""

from __future__ import annotations

import copy
import inspect
import os

from pydetect._validation import _as_real, check_bool, check_int, check_scale_range

__all__ = ["Spec", "Int", "Real", "Positive", "NonNegative", "Fraction", "Bool", "Choice", "Path", "ScaleRange",
           "Sequence", "Instance", "Group", "Optional", "OneOf", "Check", "Parameters"]


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Spec:
    """Base class of the specs: ``check(value, name)`` returns the checked value or raises
    TypeError / ValueError naming ``name``; ``describe()`` says what is accepted."""

    def check(self, value, name: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


class Int(Spec):
    """An integer (bools refused) in [minimum, maximum] (either bound optional), within int64."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum

    def check(self, value, name):
        return check_int(value, name, minimum=self.minimum, maximum=self.maximum)

    def describe(self):
        if self.minimum is not None and self.maximum is not None:
            return f"an integer in [{self.minimum}, {self.maximum}]"
        if self.minimum is not None:
            return f"an integer >= {self.minimum}"
        if self.maximum is not None:
            return f"an integer <= {self.maximum}"
        return "an integer"


class Real(Spec):
    """A finite real number (bools refused), optionally bounded.

    Parameters
    ----------
    minimum, maximum : float, optional
        The bounds (None: unbounded on that side).
    closed : {"both", "left", "right", "neither"}, default "both"
        Which bounds are included, as in scikit-learn's ``Interval``.
    """

    def __init__(self, minimum: float | None = None, maximum: float | None = None, *, closed: str = "both"):
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.minimum, self.maximum, self.closed = minimum, maximum, closed

    def _inside(self, x: float) -> bool:
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.minimum is not None and not (x >= self.minimum if lo_in else x > self.minimum):
            return False
        return self.maximum is None or (x <= self.maximum if hi_in else x < self.maximum)

    def check(self, value, name):
        x = _as_real(value, name)  # TypeError for a non-number, ValueError for NaN / inf
        if not self._inside(x):
            raise ValueError(f"{name} must be {self.describe()}, got {x}")
        return x

    def describe(self):
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.minimum is not None and self.maximum is not None:
            return f"in {'[' if lo_in else '('}{_num(self.minimum)}, {_num(self.maximum)}{']' if hi_in else ')'}"
        if self.minimum is not None:
            return f"{'>=' if lo_in else '>'} {_num(self.minimum)}"
        if self.maximum is not None:
            return f"{'<=' if hi_in else '<'} {_num(self.maximum)}"
        return "a real number"


def Positive() -> Real:  # noqa: N802 - reads as a spec class in the tables
    """A real number > 0."""
    return Real(0, closed="neither")


def NonNegative() -> Real:  # noqa: N802
    """A real number >= 0."""
    return Real(0)


def Fraction() -> Real:  # noqa: N802
    """A real number in [0, 1] (a probability, an IoU, a share)."""
    return Real(0, 1)


class Bool(Spec):
    """True or False (numpy bools too; integers refused)."""

    def check(self, value, name):
        return check_bool(value, name)

    def describe(self):
        return "True or False"


class Choice(Spec):
    """One of a fixed set of values (compared with ``==``; strings, mostly)."""

    def __init__(self, *options):
        self.options = options

    def check(self, value, name):
        # A value that cannot be compared (an array) is not one of the options either.
        try:
            found = any(isinstance(value, type(o)) and value == o for o in self.options)
        except (TypeError, ValueError):
            found = False
        if not found:
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
        return value

    def describe(self):
        shown = ", ".join(map(repr, self.options))
        return shown if len(self.options) == 1 else f"one of {shown}"


class Path(Spec):
    """A filesystem path: a str or an ``os.PathLike``."""

    def check(self, value, name):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be {self.describe()}, got {type(value).__name__}")
        return value

    def describe(self):
        return "a path (str or os.PathLike)"


class ScaleRange(Spec):
    """None or a pair (lo, hi) with 0 < lo <= hi <= 8: a stretch or scale-jitter range
    (:func:`pydetect._validation.check_scale_range`)."""

    def check(self, value, name):
        return check_scale_range(value, name)

    def describe(self):
        return "None or a pair (lo, hi) with 0 < lo <= hi <= 8"


class Sequence(Spec):
    """A sequence (not a string) whose items each satisfy ``item``, named ``name[i]``.

    Parameters
    ----------
    item : Spec
    min_length, max_length : int, optional
        Bounds on the length (``length`` sets both).
    of : str, optional
        What the items are, in the plural, for the messages (default from ``item``).
    """

    def __init__(self, item: Spec, *, length: int | None = None, min_length: int = 0,
                 max_length: int | None = None, of: str | None = None):
        self.item = item
        self.min_length = length if length is not None else min_length
        self.max_length = length if length is not None else max_length
        self.of = of or ("integers" if isinstance(item, Int) else "numbers")

    def check(self, value, name):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__getitem__"):
            raise TypeError(f"{name} must be {self.describe()}, got {type(value).__name__} {value!r}")
        n = len(value)
        if n < self.min_length or (self.max_length is not None and n > self.max_length):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
        for i in range(n):
            self.item.check(value[i], f"{name}[{i}]")
        return value

    def describe(self):
        lo, hi = self.min_length, self.max_length
        if lo == hi:
            return f"{lo} {self.of}"
        if hi is not None:
            return f"a sequence of {lo} to {hi} {self.of}"
        return f"a {'non-empty ' if lo == 1 else ''}sequence of {self.of}" + (f" (at least {lo})" if lo > 1 else "")


class Instance(Spec):
    """An instance of a class (e.g. ``torch.nn.Module``), described as ``what``."""

    def __init__(self, cls: type, what: str):
        self.cls, self.what = cls, what

    def check(self, value, name):
        if not isinstance(value, self.cls):
            raise TypeError(f"{name} must be {self.what}, got {type(value).__name__}")
        return value

    def describe(self):
        return self.what


class Group(Spec):
    """A nested :class:`Parameters` object of class ``cls`` (e.g. ``Pretraining``); its own
    parameters are validated too, named ``name.field``."""

    def __init__(self, cls: type):
        self.cls = cls

    def check(self, value, name):
        if not isinstance(value, self.cls):
            raise TypeError(f"{name} must be {self.describe()}, got {type(value).__name__} {value!r}")
        value._validate_params(prefix=f"{name}.")
        return value

    def describe(self):
        return f"a {self.cls.__name__}"


class Optional(Spec):
    """None, or a value ``spec`` accepts."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def check(self, value, name):
        if value is None:
            return None
        try:
            return self.spec.check(value, name)
        except (TypeError, ValueError) as exc:
            # "x must be > 0" -> "x must be None or > 0" when the message is the spec's own.
            own = f"{name} must be {self.spec.describe()}"
            text = str(exc)
            if text.startswith(own):
                raise type(exc)(f"{name} must be {self.describe()}{text[len(own):]}") from None
            raise

    def describe(self):
        return f"None or {self.spec.describe()}"


class OneOf(Spec):
    """A value that one of ``specs`` accepts (tried in order; the first that accepts wins).
    When none does: TypeError if every one refused the type, else ValueError."""

    def __init__(self, *specs: Spec):
        self.specs = specs

    def check(self, value, name):
        errors = []
        for spec in self.specs:
            try:
                return spec.check(value, name)
            except (TypeError, ValueError) as exc:
                errors.append(exc)
        kind = TypeError if all(isinstance(e, TypeError) for e in errors) else ValueError
        raise kind(f"{name} must be {self.describe()}, got {value!r}")

    def describe(self):
        parts = [s.describe() for s in self.specs]
        return " or ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " or " + parts[-1]


class Check(Spec):
    """A named check function ``function(value, name) -> value`` that raises TypeError /
    ValueError itself: for the few parameters whose rule fits no other spec (anchor shape
    sets, feature-stride lists)."""

    def __init__(self, function, description: str):
        self.function, self.description = function, description

    def check(self, value, name):
        return self.function(value, name)

    def describe(self):
        return self.description

    def __repr__(self) -> str:
        return f"<Check {getattr(self.function, '__name__', self.function)!r}: {self.description}>"


# ---------------------------------------------------------------------------------------
class Parameters:
    """scikit-learn's parameter protocol from the keyword-only ``__init__`` signature, and
    validation from the ``_PARAMS`` tables (see the module docstring).

    ``__init__`` stores each parameter unchanged under its own name; ``get_params`` /
    ``set_params`` follow scikit-learn (``deep=True`` lists a nested group's parameters as
    ``group__name``, and ``set_params(group__name=value)`` sets one), so that
    ``sklearn.base.clone`` and grid searches work.
    """

    #: Parameter name -> spec, merged with the bases' tables along the MRO.
    _PARAMS: dict = {}

    @classmethod
    def _param_defaults(cls) -> dict:
        signature = inspect.signature(cls.__init__)
        return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}

    @classmethod
    def _param_names(cls) -> list:
        return list(cls._param_defaults())

    @classmethod
    def _param_specs(cls) -> dict:
        """The merged ``_PARAMS`` table, restricted to the constructor's parameters; TypeError
        if one has no spec (every parameter must be declared)."""
        table: dict = {}
        for klass in reversed(cls.__mro__):
            table.update(vars(klass).get("_PARAMS", {}))
        names = cls._param_names()
        missing = [n for n in names if n not in table]
        if missing:
            raise TypeError(f"{cls.__name__}._PARAMS declares no spec for the parameter(s) {', '.join(missing)}")
        return {n: table[n] for n in names}

    def _validate_params(self, prefix: str = "") -> None:
        """Checks every parameter against its spec (in signature order), then the rules that
        involve several parameters (:meth:`_check_param_combinations`). ``prefix`` names a
        nested group in the messages (``"pretrain."``)."""
        for name, spec in self._param_specs().items():
            spec.check(getattr(self, name), prefix + name)
        self._check_param_combinations()

    def _check_param_combinations(self) -> None:
        """Rules between parameters, run after each one passed its spec (none by default)."""

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters as given; with ``deep``, also each nested group's
        parameters as ``group__name`` (scikit-learn's convention)."""
        out = {}
        for name in self._param_defaults():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Sets parameters (scikit-learn's API: ``sklearn.base.clone`` and grid searches use
        it); ``group__name=value`` sets one parameter of a nested group. Returns self. Values
        are checked when ``fit`` runs, as for the constructor; an unknown name raises ValueError.

        A nested group is copied before it changes: the default group in the constructor's
        signature is one object shared by every instance built without it.
        """
        known = self._param_defaults()
        nested: dict = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in known:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; "
                                 f"its parameters are {', '.join(known)}")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub in nested.items():
            group = getattr(self, name)
            if not hasattr(group, "set_params"):
                first = next(iter(sub))
                raise ValueError(f"cannot set {name}__{first}: {type(self).__name__}.{name} is {group!r}, "
                                 "which has no parameters of its own")
            setattr(self, name, copy.copy(group).set_params(**sub))
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"


def _restore_groups(cls, params: dict) -> dict:
    """``params`` with each group parameter (a :class:`Group` spec, possibly inside
    :class:`Optional`) given as a dict of its settings, as a model file stores it, rebuilt
    as its object."""
    out = dict(params)
    for name, spec in cls._param_specs().items():
        while isinstance(spec, Optional):
            spec = spec.spec
        if isinstance(spec, Group) and isinstance(out.get(name), dict):
            out[name] = spec.cls(**out[name])
    return out
