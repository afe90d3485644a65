"""pydetect._params: each spec kind accepts what it documents and refuses the rest with the
right error naming the parameter; the Parameters protocol (tables merged along the MRO,
scikit-learn's get_params / set_params with nested groups)."""

import math
import pathlib

import numpy as np
import pytest

from pydetect._params import (Bool, Check, Choice, Fraction, Group, Instance, Int, NonNegative, OneOf, Optional,
                              Parameters, Path, Positive, Real, ScaleRange, Sequence)


# Each spec kind: (spec, accepted values, [(bad value, error type, message fragment)]).
KINDS = {
    "Int": (Int(minimum=1, maximum=10), [1, 10, np.int64(5)],
            [("3", TypeError, "must be an integer"), (2.0, TypeError, "must be an integer"),
             (True, TypeError, "must be an integer"), (0, ValueError, "must be >= 1, got 0"),
             (11, ValueError, "must be <= 10, got 11")]),
    "Real": (Real(0, 1, closed="right"), [1e-9, 0.5, 1, np.float32(0.25)],
             [("0.5", TypeError, "must be a real number"), (True, TypeError, "must be a real number"),
              (math.nan, ValueError, "must be finite"), (0.0, ValueError, r"must be in \(0, 1\], got 0.0"),
              (1.5, ValueError, r"must be in \(0, 1\], got 1.5")]),
    "Positive": (Positive(), [1e-300, 3], [(0, ValueError, "must be > 0, got 0.0"),
                                            (math.inf, ValueError, "must be finite")]),
    "NonNegative": (NonNegative(), [0, 2.5], [(-1e-9, ValueError, "must be >= 0")]),
    "Fraction": (Fraction(), [0, 1, 0.3], [(1.01, ValueError, r"must be in \[0, 1\], got 1.01")]),
    "Bool": (Bool(), [True, False, np.bool_(True)], [(1, TypeError, "must be True or False, got int"),
                                                      ("yes", TypeError, "must be True or False")]),
    "Choice": (Choice("fast", "slow"), ["fast", "slow"],
               [("quick", ValueError, "must be one of 'fast', 'slow', got 'quick'"),
                (np.array(["fast", "slow"]), ValueError, "must be one of"), (None, ValueError, "must be one of")]),
    "Path": (Path(), ["dir", pathlib.Path("dir")], [(3, TypeError, r"must be a path \(str or os.PathLike\)")]),
    "ScaleRange": (ScaleRange(), [None, (0.5, 2.0), [1, 1]],
                   [((2.0, 1.0), ValueError, "must satisfy 0 < lo <= hi"), ("wide", ValueError, "must be None or a pair"),
                    ((0.5, 100.0), ValueError, "must satisfy")]),
    "Sequence": (Sequence(Positive(), min_length=1), [(1.0,), [2, 3], np.array([0.5, 4.0])],
                 [(5, TypeError, "must be a non-empty sequence of numbers, got int"),
                  ("ab", TypeError, "must be a non-empty sequence"), ((), ValueError, "must be a non-empty sequence"),
                  ((1.0, -2.0), ValueError, r"^x\[1\] must be > 0")]),
    "Instance": (Instance(pathlib.PurePath, "a pure path"), [pathlib.PurePath("a")],
                 [("a", TypeError, "must be a pure path, got str")]),
    "Optional": (Optional(Real(0, 1, closed="neither")), [None, 0.5],
                 [(1.0, ValueError, r"must be None or in \(0, 1\), got 1.0"), ("x", TypeError, "must be a real number")]),
    "OneOf": (OneOf(Bool(), Int(minimum=1)), [True, 3],
              [(0, ValueError, "must be True or False or an integer >= 1, got 0"),
               ("x", TypeError, "must be True or False or an integer >= 1")]),
}


def _positive_pair(value, name):
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"{name} must be a pair, got {type(value).__name__}")
    for i, v in enumerate(value):
        Positive().check(v, f"{name}[{i}]")
    return value


KINDS["Check"] = (Check(_positive_pair, "a pair of positive numbers"), [(1, 2)],
                  [([1, 2], TypeError, "must be a pair, got list"), ((1, 0), ValueError, r"^x\[1\] must be > 0")])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_spec_kind_accepts_and_refuses_naming_the_parameter(kind):
    spec, good, bad = KINDS[kind]
    for value in good:
        spec.check(value, "x")
    assert bad, "every kind has a refused value"
    for value, error, fragment in bad:
        with pytest.raises(error, match=fragment) as info:
            spec.check(value, "x")
        assert str(info.value).startswith("x"), info.value  # the message names the parameter first
        assert type(info.value) is error


def test_real_bounds_and_normalised_value():
    assert Real(1, closed="neither").describe() == "> 1" and Real(maximum=2).describe() == "<= 2"
    assert Real().describe() == "a real number" and Real(0, 1, closed="left").describe() == "in [0, 1)"
    assert Real(1, 4).check(np.float64(2), "c") == 2.0 and type(Real().check(3, "c")) is float
    with pytest.raises(ValueError, match="closed"):
        Real(0, 1, closed="open")


def test_optional_keeps_an_inner_message_it_cannot_reword():
    # check_int's message is not Int.describe(): it is passed on unchanged, still naming x.
    with pytest.raises(ValueError, match="^x must be >= 1, got 0"):
        Optional(Int(minimum=1)).check(0, "x")


class _Inner(Parameters):
    _PARAMS = {"k": Int(minimum=1), "mode": Choice("a", "b")}

    def __init__(self, *, k=1, mode="a"):
        self.k = k
        self.mode = mode


class _Base(Parameters):
    _PARAMS = {"n": Int(minimum=0), "rate": Fraction()}

    def __init__(self, *, n=0, rate=0.5):
        self.n = n
        self.rate = rate


class _Child(_Base):
    # Replaces the base's spec of n, adds its own parameters.
    _PARAMS = {"n": Int(minimum=5), "inner": Optional(Group(_Inner)), "lo": Real(), "hi": Real()}

    def __init__(self, *, n=5, rate=0.5, inner=_Inner(), lo=0.0, hi=1.0):
        super().__init__(n=n, rate=rate)
        self.inner = inner
        self.lo = lo
        self.hi = hi

    def _check_param_combinations(self):
        if self.lo > self.hi:
            raise ValueError(f"lo must be <= hi, got {self.lo} > {self.hi}")


def test_tables_merge_along_the_mro_and_every_parameter_needs_a_spec():
    specs = _Child._param_specs()
    assert list(specs) == ["n", "rate", "inner", "lo", "hi"]  # signature order
    assert specs["n"].minimum == 5 and _Base._param_specs()["n"].minimum == 0
    _Child()._validate_params()
    with pytest.raises(ValueError, match="^n must be >= 5"):
        _Child(n=3)._validate_params()
    with pytest.raises(ValueError, match="^rate must be in"):
        _Child(rate=2)._validate_params()

    class Undeclared(_Base):
        def __init__(self, *, n=0, rate=0.5, extra=1):
            super().__init__(n=n, rate=rate)
            self.extra = extra

    with pytest.raises(TypeError, match="Undeclared._PARAMS declares no spec for the parameter.s. extra"):
        Undeclared()._validate_params()


def test_combination_rules_run_after_the_table():
    with pytest.raises(ValueError, match="lo must be <= hi"):
        _Child(lo=2.0, hi=1.0)._validate_params()
    with pytest.raises(TypeError, match="^lo must be a real number"):  # the table first
        _Child(lo="2", hi=1.0)._validate_params()


def test_a_group_is_validated_with_dotted_names():
    with pytest.raises(ValueError, match=r"^inner\.k must be >= 1, got 0"):
        _Child(inner=_Inner(k=0))._validate_params()
    with pytest.raises(ValueError, match=r"^inner\.mode must be one of 'a', 'b'"):
        _Child(inner=_Inner(mode="c"))._validate_params()
    with pytest.raises(TypeError, match="^inner must be None or a _Inner, got dict"):
        _Child(inner={"k": 2})._validate_params()
    _Child(inner=None)._validate_params()


def test_get_and_set_params_with_a_nested_group():
    obj = _Child(inner=_Inner(k=3))
    deep = obj.get_params()
    assert deep["inner__k"] == 3 and deep["inner__mode"] == "a" and deep["inner"] is obj.inner
    assert "inner__k" not in obj.get_params(deep=False)
    shared = _Child()  # built with the signature's default _Inner, shared by every such instance
    default = shared.inner
    assert shared.set_params(inner__k=7, n=6) is shared
    assert shared.inner.k == 7 and shared.n == 6
    assert default.k == 1 and _Child().inner.k == 1  # copied, not changed in place
    with pytest.raises(ValueError, match="_Child has no parameter 'colour'"):
        obj.set_params(colour=1)
    with pytest.raises(ValueError, match="_Inner has no parameter 'depth'"):
        obj.set_params(inner__depth=1)
    with pytest.raises(ValueError, match="cannot set inner__k: _Child.inner is None"):
        _Child(inner=None).set_params(inner__k=2)
    assert repr(_Child(n=6)) == "_Child(n=6, rate=0.5, inner=_Inner(k=1, mode='a'), lo=0.0, hi=1.0)"


def test_sklearn_clone_of_a_nested_group():
    base = pytest.importorskip("sklearn.base")
    obj = _Child(inner=_Inner(k=4, mode="b"))
    twin = base.clone(obj)
    assert twin.inner is not obj.inner and twin.inner.get_params() == {"k": 4, "mode": "b"}
    assert base.clone(obj).set_params(inner__k=9).inner.k == 9 and obj.inner.k == 4
