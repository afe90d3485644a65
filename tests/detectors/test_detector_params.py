"""Every estimator declares every parameter in its spec table, a bad value of each is refused
before any work naming the parameter, and the ``pretrain`` group behaves as a scikit-learn
parameter (get_params(deep=True), set_params(pretrain__x=...), clone) and reaches training."""

import math

import pytest

pytest.importorskip("torch")

from pydetect import data, engine  # noqa: E402
from pydetect._params import (Bool, Check, Choice, Group, Int, OneOf, Optional, Path, Real, ScaleRange,  # noqa: E402
                              Sequence)
from pydetect.detectors import (RCNN, SSD, YOLO, FastRCNN, FasterRCNN, ImplicitShapeModel, OverFeat,  # noqa: E402
                                Pretraining, ViolaJonesDetector, WarpPretraining)

ESTIMATORS = [ViolaJonesDetector, ImplicitShapeModel, OverFeat, RCNN, FastRCNN, FasterRCNN, YOLO, SSD]
GROUPS = [Pretraining, WarpPretraining]

# A refused value of each parameter checked by a named function (Check): the test below fails
# for a Check parameter missing here, so that each one is exercised.
CHECK_BAD = {
    "window": ("x", TypeError),            # ViolaJonesDetector: (height, width)
    "min_size": ("x", TypeError), "max_size": ((0, -1), ValueError),
    "augment": ("strong", ValueError),     # the CNN detectors' photometric settings
    "device": ("tpu", ValueError),
    "anchors": ("auto", ValueError),       # FasterRCNN, YOLO, SSD
    "anchor_sizes": (((32,), (0,)), ValueError),  # FasterRCNN: sizes, or per-level tuples of them
    "strides": ((8, 12), ValueError),      # YOLO
    "rpn_pre_nms_top_n": (5, ValueError), "rpn_post_nms_top_n": ((10, 0), ValueError),
}


def bad_values(spec, name):
    """[(value, error type)] that ``spec`` must refuse."""
    if isinstance(spec, Optional):
        return bad_values(spec.spec, name)
    if isinstance(spec, Int):
        out = [("1", TypeError), (1.5, TypeError)]
        out += [(spec.minimum - 1, ValueError)] if spec.minimum is not None else []
        return out + ([(spec.maximum + 1, ValueError)] if spec.maximum is not None else [])
    if isinstance(spec, Real):
        out = [("0.5", TypeError), (math.nan, ValueError)]
        out += [(spec.minimum - 1, ValueError)] if spec.minimum is not None else []
        return out + ([(spec.maximum + 1, ValueError)] if spec.maximum is not None else [])
    if isinstance(spec, Bool):
        return [("yes", TypeError), (1, TypeError)]
    if isinstance(spec, Choice):
        return [("no-such-option", ValueError)]
    if isinstance(spec, Path):
        return [(3, TypeError)]
    if isinstance(spec, ScaleRange):
        return [((2.0, 1.0), ValueError), ("wide", ValueError)]
    if isinstance(spec, Sequence):
        item_value, item_error = bad_values(spec.item, name)[-1]
        return [(7, TypeError), ([item_value] * max(spec.min_length, 1), item_error)]
    if isinstance(spec, Group):  # another type, and a bad value of each of the group's settings
        out = [({"seconds": 1}, TypeError)]
        for field, field_spec in spec.cls._param_specs().items():
            out += [(spec.cls(**{field: value}), error) for value, error in bad_values(field_spec, field)]
        return out
    if isinstance(spec, OneOf):  # a string none of the alternatives takes
        error = ValueError if any(isinstance(s, Choice) for s in spec.specs) else TypeError
        return [("no-such-option", error)] + ([(object(), ValueError)] if error is ValueError else [])
    if isinstance(spec, Check):
        return [CHECK_BAD[name]]
    raise AssertionError(f"no bad value for the spec {spec!r} of {name}")


def _cases():
    for cls in ESTIMATORS + GROUPS:
        for name, spec in cls._param_specs().items():
            for value, error in bad_values(spec, name):
                yield pytest.param(cls, name, value, error, id=f"{cls.__name__}-{name}-{value!r}"[:80])


@pytest.mark.parametrize("cls", ESTIMATORS + GROUPS)
def test_every_constructor_parameter_has_a_spec_and_every_spec_a_parameter(cls):
    names = cls._param_names()
    declared = {k for klass in cls.__mro__ for k in vars(klass).get("_PARAMS", {})}
    assert set(names) <= declared, f"{cls.__name__}: no spec for {sorted(set(names) - declared)}"
    # A spec of a name that no class using the table has would be a typo.
    users = [c for c in ESTIMATORS + GROUPS if issubclass(c, cls) or issubclass(cls, c)]
    known = set().union(*(c._param_names() for c in users))
    assert declared <= known, f"{cls.__name__}: specs of unknown parameters {sorted(declared - known)}"
    specs = cls._param_specs()
    assert list(specs) == names
    cls()._validate_params()  # the defaults are valid


@pytest.mark.parametrize("cls, name, value, error", list(_cases()))
def test_a_bad_value_of_each_parameter_is_refused_naming_it(cls, name, value, error):
    det = cls(**{name: value})
    with pytest.raises(error) as info:
        det._validate_params()
    assert type(info.value) is error
    assert str(info.value).startswith(name), info.value


def test_each_check_parameter_has_a_bad_value():
    checks = {name for cls in ESTIMATORS for name, spec in cls._param_specs().items()
              if isinstance(spec, Check) or (isinstance(spec, Optional) and isinstance(spec.spec, Check))}
    assert checks == set(CHECK_BAD)


@pytest.fixture(scope="module")
def tiny():
    return data.digits_in_clutter("train", n_images=2, seed=0)


@pytest.mark.parametrize("cls, params, error, fragment", [
    (ViolaJonesDetector, dict(max_depth=3), ValueError, "max_depth must be <= 2"),
    (ViolaJonesDetector, dict(resume=True), ValueError, "resume=True needs checkpoint_dir"),
    (ImplicitShapeModel, dict(segment="yes"), TypeError, "segment must be True or False"),
    (OverFeat, dict(window=30, widths=(8, 16, 32, 64)), ValueError, "window must be >="),
    (RCNN, dict(pretrain=WarpPretraining(epochs=0)), ValueError, r"pretrain\.epochs must be >= 1"),
    (RCNN, dict(pretrain=Pretraining()), TypeError, "pretrain must be None or a WarpPretraining"),
    (FastRCNN, dict(pretrain=Pretraining(seconds=-1)), ValueError, r"pretrain\.seconds must be >= 0"),
    (FasterRCNN, dict(fpn=True), ValueError, "fpn=True needs backbone='resnet18'"),
    (YOLO, dict(pretrain=Pretraining(shear=2)), ValueError, r"pretrain\.shear must be in \[0, 1\]"),
    (SSD, dict(checkpoint_dir=5), TypeError, "checkpoint_dir must be None or a path"),
])
def test_fit_refuses_bad_parameters_before_any_work(tiny, cls, params, error, fragment, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(engine, "pretrain_detector_backbone", no_training)
    monkeypatch.setattr(engine, "train_loop", no_training)
    with pytest.raises(error, match=fragment):
        cls(progress=False, **params).fit(tiny)


# ----------------------------------------------------------------------------- the pretrain group
@pytest.mark.parametrize("group, setting, value, error, fragment", [
    (Pretraining, "seconds", -1.0, ValueError, r"pretrain\.seconds must be >= 0, got -1.0"),
    (Pretraining, "seconds", "90", TypeError, r"pretrain\.seconds must be a real number"),
    (Pretraining, "epochs", 0, ValueError, r"pretrain\.epochs must be >= 1, got 0"),
    (Pretraining, "copies", 0, ValueError, r"pretrain\.copies must be >= 1, got 0"),
    (Pretraining, "copies", 2.0, TypeError, r"pretrain\.copies must be an integer"),
    (Pretraining, "stretch", (2.0, 1.0), ValueError, r"pretrain\.stretch must satisfy 0 < lo <= hi"),
    (Pretraining, "shear", 1.5, ValueError, r"pretrain\.shear must be in \[0, 1\], got 1.5"),
    (WarpPretraining, "seconds", math.inf, ValueError, r"pretrain\.seconds must be finite"),
    (WarpPretraining, "epochs", 0, ValueError, r"pretrain\.epochs must be >= 1, got 0"),
])
def test_each_pretraining_setting_is_checked(group, setting, value, error, fragment):
    cls = RCNN if group is WarpPretraining else FasterRCNN
    with pytest.raises(error, match=fragment):
        cls(pretrain=group(**{setting: value}))._validate_params()


def test_each_detector_keeps_its_pretraining_defaults():
    crops = Pretraining(seconds=90.0, epochs=30, copies=8, stretch=(0.75, 1.33), shear=0.25)
    for cls in (FastRCNN, FasterRCNN, YOLO, SSD):
        assert cls().pretrain == crops and type(cls().pretrain) is Pretraining
    assert RCNN().pretrain == WarpPretraining(seconds=120.0, epochs=40)
    assert Pretraining() == crops and Pretraining(epochs=5) != crops and Pretraining() != WarpPretraining()
    assert "pretrain" not in OverFeat().get_params()  # its windows are its training set


@pytest.mark.parametrize("cls", [FastRCNN, FasterRCNN, YOLO, SSD, RCNN])
def test_pretrain_is_a_scikit_learn_parameter_group(cls):
    base = pytest.importorskip("sklearn.base")
    det = cls()
    deep = det.get_params(deep=True)
    assert deep["pretrain__epochs"] == det.pretrain.epochs and deep["pretrain"] is det.pretrain
    assert "pretrain__epochs" not in det.get_params(deep=False)
    assert det.set_params(pretrain__epochs=5, pretrain__seconds=12.0) is det
    assert (det.pretrain.epochs, det.pretrain.seconds) == (5, 12.0)
    assert cls().pretrain.epochs != 5  # the shared default group was copied, not changed
    twin = base.clone(det)
    assert twin.pretrain == det.pretrain and twin.pretrain is not det.pretrain
    assert twin.get_params() == det.get_params()
    assert base.clone(cls(pretrain=None)).pretrain is None
    with pytest.raises(ValueError, match="has no parameter 'copy'"):
        det.set_params(pretrain__copy=1)
    with pytest.raises(ValueError, match="pretrain is None"):
        cls(pretrain=None).set_params(pretrain__epochs=3)


def test_pretrain_group_in_a_grid_search_parameter_path():
    """What a grid search does: clone, then set_params with the nested name."""
    base = pytest.importorskip("sklearn.base")
    grid = [{"pretrain__epochs": e, "lr": lr} for e in (3, 6) for lr in (1e-3, 2e-3)]
    models = [base.clone(FasterRCNN(pretrain=Pretraining(seconds=20.0))).set_params(**g) for g in grid]
    assert [(m.pretrain.epochs, m.pretrain.seconds, m.lr) for m in models] == \
        [(3, 20.0, 1e-3), (3, 20.0, 2e-3), (6, 20.0, 1e-3), (6, 20.0, 2e-3)]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("cls", [FasterRCNN, YOLO])
def test_the_pretrain_settings_reach_the_crop_pretraining(tiny, cls, monkeypatch):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(engine, "pretrain_detector_backbone", record)
    pre = Pretraining(seconds=5.0, epochs=2, copies=3, stretch=None, shear=0.1)
    with pytest.raises(_Stop):
        cls(pretrain=pre, progress=False).fit(tiny)
    assert {k: seen[k] for k in ("seconds", "epochs", "copies", "stretch", "shear")} == pre.get_params()


def test_rcnn_warp_pretraining_reaches_pretrain_backbone(tiny, monkeypatch):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(engine, "pretrain_backbone", record)
    with pytest.raises(_Stop):
        RCNN(pretrain=WarpPretraining(seconds=4.0, epochs=3), train_proposals=20, progress=False).fit(tiny)
    assert (seen["seconds"], seen["max_epochs"]) == (4.0, 3)


@pytest.mark.parametrize("pretrain", [None, Pretraining(seconds=0)])
def test_no_pretraining(tiny, pretrain, monkeypatch):
    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretraining ran")

    monkeypatch.setattr(engine, "pretrain_detector_backbone", no_pretraining)
    det = YOLO(pretrain=pretrain, max_iter=1, train_seconds=1e9, batch_size=1, progress=False,
               num_threads=1).fit(tiny)
    assert det.pretrain_accuracy_ is None and det.pretrain_epochs_ is None and len(det.history_["losses"]) >= 1


@pytest.mark.parametrize("cls, pretrain, extra", [
    (YOLO, Pretraining(seconds=1e9, epochs=2, copies=1), dict(max_iter=1, train_seconds=1e9, batch_size=1)),
    (FasterRCNN, Pretraining(seconds=1e9, epochs=2, copies=1), dict(max_iter=1, train_seconds=1e9, batch_size=1)),
    (RCNN, WarpPretraining(seconds=1e9, epochs=2), dict(train_proposals=20, test_proposals=10,
                                                        hard_negative_rounds=0)),
])
def test_the_pretraining_epochs_reached_are_recorded_saved_and_resumed(tiny, cls, pretrain, extra, tmp_path):
    """``pretrain_epochs_``: the epochs of crop pretraining trained (here the count, which the
    time never reaches), kept by save/load and, from a checkpoint directory, by a resumed fit."""
    det = cls(pretrain=pretrain, progress=False, num_threads=1, checkpoint_dir=str(tmp_path / "ckpt"),
              **extra).fit(tiny)
    assert det.pretrain_epochs_ == 2.0
    det.save(tmp_path / "m.model")
    assert type(det).load(tmp_path / "m.model").pretrain_epochs_ == 2.0
    if cls is not RCNN:  # the detection CNNs keep the pretrained body; a resumed fit loads it
        again = cls(pretrain=pretrain, progress=False, num_threads=1, checkpoint_dir=str(tmp_path / "ckpt"),
                    resume=True, **extra).fit(tiny)
        assert again.pretrain_epochs_ == 2.0

