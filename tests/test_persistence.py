"""Model files, checkpoints and caches: nothing is unpickled unless asked (crafted files run no
code), files of the previous format still load on request, and a killed writer's temporary
file is removed by the next write."""

import io
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from pydetect._io import atomic_write  # noqa: E402
from pydetect._persist import decode, encode  # noqa: E402
from pydetect.data import digits_in_clutter  # noqa: E402
from pydetect.detectors import (RCNN, YOLO, BaseDetector, FasterRCNN, Pretraining, ViolaJonesDetector,  # noqa: E402
                                WarpPretraining)
from pydetect.models import VGGStyle  # noqa: E402
from pydetect import engine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Evil:
    """What a malicious file holds: unpickling it creates ``marker`` (it could run anything)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code_ran"
    # The payload works: unpickling it does create the marker.
    pickle.loads(pickle.dumps(Evil(path)))
    assert path.exists()
    path.unlink()
    return path


@pytest.fixture(scope="module")
def grey():
    from skimage import data as skdata

    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def vj():
    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    return ViolaJonesDetector.from_cascade(xml, class_name="face", min_neighbors=3, window=(24, 24))


@pytest.fixture(scope="module")
def tiny_data():
    return digits_in_clutter("train", n_images=3, seed=3)


def tiny_faster(**kw):
    params = dict(pretrain=None, max_iter=2, batch_size=1, progress=False, seed=0,
                  rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))
    return FasterRCNN(**dict(params, **kw))


@pytest.fixture(scope="module")
def faster(tiny_data):
    return tiny_faster().fit(tiny_data)


def same_detections(a, b):
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)


def old_format_file(det, path):
    """A model file as pydetect 0.1.0's save wrote it (format 1: the pickled __dict__)."""
    state = dict(vars(det))
    if isinstance(det, ViolaJonesDetector):
        state.pop("cascade_")
        state["_cascade_arrays"] = [c.to_arrays() for c in state.pop("cascades_")]
    payload = {"format": 1, "class": f"{type(det).__module__}.{type(det).__qualname__}", "state": state}
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)


def rewrite_header(src, dst, **changes):
    with zipfile.ZipFile(src) as z:
        members = {name: z.read(name) for name in z.namelist()}
    header = json.loads(members["header.json"])
    header.update(changes)
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


# ----------------------------------------------------------------------------- the format
def test_tagged_values_round_trip_with_their_types():
    value = {"t": (1, 2.5, "x"), "ints": {3: [None, True]}, "__dunder": 1, "nan": float("nan"),
             "f32": np.float32(0.1), "a": np.arange(6, dtype=np.int16).reshape(2, 3),
             "path": pathlib.Path("some/dir"), (1, 2): "tuple key", "tensor": torch.arange(3.0)}
    arrays = []
    text = json.dumps(encode(value, arrays, "value"))
    back = decode(json.loads(text), arrays)
    assert list(back) == list(value)
    assert back["t"] == (1, 2.5, "x") and back["ints"] == {3: [None, True]} and back["__dunder"] == 1
    assert np.isnan(back["nan"]) and back[(1, 2)] == "tuple key"
    assert type(back["f32"]) is np.float32 and back["f32"] == value["f32"]
    assert back["a"].dtype == np.int16 and np.array_equal(back["a"], value["a"])
    assert back["path"] == pathlib.Path("some/dir")
    assert torch.equal(back["tensor"], value["tensor"])
    with pytest.raises(TypeError, match=r"value\['obj'\]: a object cannot be stored"):
        encode({"obj": object()}, [], "value")
    with pytest.raises(TypeError, match="object array"):
        encode(np.array([None]), [], "value")
    for bad in ({"__array__": 5}, {"__array__": "0"}, {"__tuple__": 1}, {"__what__": []},
                {"__tuple__": [], "x": 1}):
        with pytest.raises(ValueError):
            decode(bad, [np.zeros(1)])


def test_a_model_file_is_json_and_npy_and_loads_without_pickle(vj, grey, tmp_path, monkeypatch):
    path = tmp_path / "vj.model"
    vj.save(path)
    with zipfile.ZipFile(path) as z:
        header = json.loads(z.read("header.json"))
        names = z.namelist()
        for name in names[1:]:
            np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)
    assert header["format"] == 2 and header["class"] == "ViolaJonesDetector" and header["modules"] == []
    assert header["params"]["min_neighbors"] == 3 and header["params"]["window"] == {"__tuple__": [24, 24]}
    assert names[0] == "header.json" and all(n.startswith("arrays/") and n.endswith(".npy") for n in names[1:])

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used while loading a model file")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    again = BaseDetector.load(path)
    same_detections(again.predict(grey), vj.predict(grey))
    assert again.get_params() == vj.get_params() and again.labels_ == [0]


# ----------------------------------------------------------------------------- crafted files
def crafted_files(marker):
    evil = Evil(marker)
    old = pickle.dumps({"format": 1, "class": "pydetect.detectors.viola_jones.ViolaJonesDetector",
                        "state": {"x_": evil}})
    torch_file = io.BytesIO()
    torch.save({"state": evil}, torch_file)
    object_npy = io.BytesIO()
    np.lib.format.write_array(object_npy, np.array([evil, 1], dtype=object), allow_pickle=True)
    with_header = io.BytesIO()
    with zipfile.ZipFile(with_header, "w") as z:
        z.writestr("header.json", json.dumps({"format": 2, "class": "ViolaJonesDetector", "params": {},
                                              "modules": [], "state": {"cascades_": {"__array__": 0}}}))
        z.writestr("arrays/0.npy", object_npy.getvalue())
    return {"raw pickle": pickle.dumps(evil), "format-1 payload": old, "torch.save": torch_file.getvalue(),
            "object array": with_header.getvalue()}


@pytest.mark.parametrize("kind", ["raw pickle", "format-1 payload", "torch.save", "object array"])
def test_crafted_model_files_are_refused_and_run_nothing(kind, marker, tmp_path):
    path = tmp_path / "model.model"
    path.write_bytes(crafted_files(marker)[kind])
    for cls in (BaseDetector, ViolaJonesDetector):
        with pytest.raises(ValueError, match="model.model") as info:
            cls.load(path)
        assert len(str(info.value).splitlines()) == 1
    assert not marker.exists()


def test_a_pickle_is_refused_with_advice(tmp_path, vj):
    path = tmp_path / "old.pkl"
    old_format_file(vj, path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        ViolaJonesDetector.load(path)


@pytest.mark.parametrize("name", ["BaseDetector", "os.system", "Cascade", "GeneralizedRCNN",
                                  "pydetect.detectors.viola_jones.ViolaJonesDetector", None, ["RCNN"]])
def test_classes_outside_the_allow_list_are_refused(name, vj, tmp_path):
    good = tmp_path / "vj.model"
    vj.save(good)
    bad = tmp_path / "bad.model"
    rewrite_header(good, bad, **{"class": name})
    with pytest.raises(ValueError, match="not one of pydetect's detectors"):
        BaseDetector.load(bad)
    with pytest.raises(ValueError, match="holds a ViolaJonesDetector, not a FasterRCNN"):
        FasterRCNN.load(good)


def test_malformed_headers_are_value_errors(vj, tmp_path):
    good = tmp_path / "vj.model"
    vj.save(good)
    for change, match in [({"format": 3}, "format 3"), ({"params": {"colour": 1}}, "cannot be restored"),
                          ({"state": {}}, "cannot be restored"), ({"modules": "backbone"}, "modules"),
                          ({"state": {"cascades_": {"__array__": 999}}}, "array reference")]:
        bad = tmp_path / "bad.model"
        rewrite_header(good, bad, **change)
        with pytest.raises(ValueError, match=match):
            BaseDetector.load(bad)
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.model"):
        BaseDetector.load(truncated)


# ----------------------------------------------------------------------------- format 1
def test_format_1_files_load_with_allow_pickle(vj, faster, grey, tiny_data, tmp_path):
    image = tiny_data[0][0]
    for det, probe in ((vj, grey), (faster, image)):
        path = tmp_path / f"{type(det).__name__}.pkl"
        old_format_file(det, path)
        with pytest.raises(ValueError, match="allow_pickle"):
            type(det).load(path)
        again = BaseDetector.load(path, allow_pickle=True)
        assert type(again) is type(det)
        same_detections(again.predict(probe), det.predict(probe))
        # ... and saved again in format 2, it still predicts the same.
        again.save(tmp_path / "new.model")
        same_detections(type(det).load(tmp_path / "new.model").predict(probe), det.predict(probe))


def _flat_pretraining(header, **flat):
    """``header`` with the ``pretrain`` group replaced by the flat ``pretrain_<setting>``
    parameters that model files of state versions 0 and 1 held."""
    header["params"].pop("pretrain")
    header["params"].update({f"pretrain_{k}": {"__tuple__": list(v)} if isinstance(v, tuple) else v
                             for k, v in flat.items()})
    return header


def test_a_file_older_than_a_parameter_reads_it_as_the_model_was_trained(faster, tiny_data, tmp_path):
    """State version 0 (no "state_version" in the header): the parameters and fitted attributes
    the file predates take the values that model was trained and run with (the class's
    _LEGACY_VALUES), not today's defaults; it predicts as it did."""
    good, old = tmp_path / "new.model", tmp_path / "old.model"
    faster.save(good)
    with zipfile.ZipFile(good) as z:
        members = {name: z.read(name) for name in z.namelist()}
    header = json.loads(members["header.json"])
    assert header["state_version"] == FasterRCNN._STATE_VERSION == 2
    del header["state_version"]
    # Version 0 had flat pretraining parameters, and neither crop copies nor shear.
    _flat_pretraining(header, seconds=0.0, epochs=30, stretch=(0.75, 1.33))
    del header["params"]["balance_objects"]
    assert header["state"].pop("anchor_shapes_") is None  # sizes x ratios (anchors=None)
    del header["params"]["weights"], header["params"]["trainable_layers"]  # newer than version 2
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(old, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    again = FasterRCNN.load(old)
    assert again.pretrain == Pretraining(seconds=0.0, epochs=30, copies=2, stretch=(0.75, 1.33), shear=0.0)
    assert again.balance_objects is False
    assert FasterRCNN().pretrain.copies == 8  # not today's default
    assert not [k for k in vars(again) if k.startswith("pretrain_") and not k.endswith("_")]  # no flat parameter
    assert again.anchor_shapes_ is None and again.weights is None and again.trainable_layers == 3
    same_detections(again.predict(tiny_data[0][0]), faster.predict(tiny_data[0][0]))
    # A file of today's version is read as written: a setting its pretrain group lacks takes
    # the constructor's default.
    for name in ("pretrain_seconds", "pretrain_epochs", "pretrain_stretch"):
        del header["params"][name]
    header["params"]["pretrain"] = {"seconds": 0.0, "epochs": 30}
    header["state_version"] = FasterRCNN._STATE_VERSION
    header["state"]["anchor_shapes_"] = None
    rewrite_header(old, tmp_path / "claims_new.model", **header)
    assert FasterRCNN.load(tmp_path / "claims_new.model").pretrain.copies == 8
    for bad in (FasterRCNN._STATE_VERSION + 1, -1, "1", 1.5, True):
        rewrite_header(good, tmp_path / "bad.model", state_version=bad)
        with pytest.raises(ValueError, match="state version"):
            FasterRCNN.load(tmp_path / "bad.model")


def test_a_file_with_flat_pretraining_parameters_loads_into_the_group(faster, tiny_data, tmp_path):
    """State version 1 kept pretrain_seconds, pretrain_epochs, pretrain_copies, pretrain_stretch
    and pretrain_shear as parameters of their own: they load as one Pretraining, as do the
    pickled attributes of format 1; RCNN's two become a WarpPretraining."""
    good, old = tmp_path / "new.model", tmp_path / "v1.model"
    faster.save(good)
    with zipfile.ZipFile(good) as z:
        header = json.loads(z.read("header.json"))
    flat = dict(seconds=0.0, epochs=7, copies=3, stretch=(0.8, 1.2), shear=0.1)
    rewrite_header(good, old, **dict(_flat_pretraining(header, **flat), state_version=1))
    again = FasterRCNN.load(old)
    assert again.pretrain == Pretraining(**flat) and type(again.pretrain.stretch) is tuple
    assert again.get_params()["pretrain__copies"] == 3
    assert not [k for k in vars(again) if k.startswith("pretrain_") and not k.endswith("_")]  # no flat parameter
    same_detections(again.predict(tiny_data[0][0]), faster.predict(tiny_data[0][0]))
    again.save(tmp_path / "again.model")  # saved in today's layout, it reads back the same
    assert FasterRCNN.load(tmp_path / "again.model").pretrain == Pretraining(**flat)

    # Format 1 (pickled attributes, state version 0): flat attributes, legacy copies and shear.
    state = {k: v for k, v in vars(faster).items() if k != "pretrain"}
    state.update(pretrain_seconds=0.0, pretrain_epochs=12, pretrain_stretch=None)
    path = tmp_path / "old.pkl"
    with open(path, "wb") as f:
        pickle.dump({"format": 1, "class": "pydetect.detectors.faster_rcnn.FasterRCNN", "state": state}, f)
    again = BaseDetector.load(path, allow_pickle=True)
    assert again.pretrain == Pretraining(seconds=0.0, epochs=12, copies=2, stretch=None, shear=0.0)
    assert not [k for k in vars(again) if k.startswith("pretrain_") and not k.endswith("_")]  # no flat parameter

    params, state = RCNN._upgrade({"pretrain_seconds": 35.0, "pretrain_epochs": 12, "svm_C": 0.1}, {}, 1)
    assert params == {"pretrain": WarpPretraining(seconds=35.0, epochs=12), "svm_C": 0.1} and state == {}
    params, _ = YOLO._upgrade({"pretrain_seconds": 0.0, "pretrain_shear": 0.3}, {}, 1)
    assert params == {"pretrain": Pretraining(seconds=0.0, shear=0.3)}
    assert YOLO._upgrade({"pretrain": None}, {}, 2) == ({"pretrain": None}, {})  # today's files as written


def test_format_1_outside_pydetect_is_refused_even_with_allow_pickle(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"format": 1, "class": "collections.OrderedDict", "state": {}}))
    with pytest.raises(ValueError, match="not one of pydetect's detectors"):
        BaseDetector.load(path, allow_pickle=True)


# ----------------------------------------------------------------------------- torch modules
def test_a_module_backbone_is_given_back_at_load(tiny_data, tmp_path):
    torch.manual_seed(0)
    det = tiny_faster(backbone=VGGStyle()).fit(tiny_data)
    path = tmp_path / "custom.model"
    det.save(path)
    with pytest.raises(ValueError, match=r"\['backbone'\]"):
        FasterRCNN.load(path)
    with pytest.raises(ValueError, match=r"\['backbone'\]"):
        FasterRCNN.load(path, backbone=VGGStyle(), other=VGGStyle())
    again = FasterRCNN.load(path, backbone=VGGStyle())
    same_detections(again.predict(tiny_data[0][0]), det.predict(tiny_data[0][0]))


def test_loading_leaves_torchs_random_state_alone(faster, tmp_path):
    faster.save(tmp_path / "f.model")
    before = torch.get_rng_state()
    FasterRCNN.load(tmp_path / "f.model")
    assert torch.equal(before, torch.get_rng_state())


# ----------------------------------------------------------------------------- checkpoints, caches
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch on the crafted pickles
def test_a_crafted_training_checkpoint_is_refused(marker, tmp_path):
    path = tmp_path / "toy.ckpt"
    for payload in crafted_files(marker).values():
        path.write_bytes(payload)
        with pytest.raises(ValueError, match="toy.ckpt: not a pydetect checkpoint"):
            engine.train_loop(torch.nn.Linear(2, 1), None, max_iter=1, seconds=1, lr=0.1,
                                checkpoint_path=path)
    assert not marker.exists()


def test_a_checkpoint_of_another_model_is_a_value_error(tmp_path):
    path = tmp_path / "toy.ckpt"
    torch.save({"model": torch.nn.Linear(3, 1).state_dict(), "iteration": 1}, path)
    with pytest.raises(ValueError, match="cannot resume from this checkpoint.*resume=False"):
        engine.train_loop(torch.nn.Linear(2, 1), None, max_iter=1, seconds=1, lr=0.1, checkpoint_path=path)


@pytest.mark.parametrize("name", ["backbone_pretrained.pt", "backbone_pretraining.ckpt"])
def test_a_crafted_pretrained_backbone_is_refused(name, marker, tiny_data, tmp_path):
    (tmp_path / name).write_bytes(crafted_files(marker)["torch.save"])
    with pytest.raises(ValueError, match=f"{name}: not a pydetect checkpoint"):
        tiny_faster(pretrain=Pretraining(seconds=1), checkpoint_dir=tmp_path).fit(tiny_data)
    assert not marker.exists()


def test_a_crafted_bench_cache_entry_is_retrained_not_loaded(marker, tmp_path):
    from pydetect.bench import detectors as bench

    splits = bench.load_splits("faces", quick=True, n_train=6, n_eval=2)
    overrides = dict(num_stages=1, max_weak_count=3, num_pos=40, num_neg=40, max_features=200, time_limit=None)
    key = "viola_jones"
    digest = bench._cache_key(key, bench.build_detector(key, {**bench.recipe(key, splits.kind, True), **overrides}),
                              splits)
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{key}-{digest}.model").write_bytes(crafted_files(marker)["raw pickle"])
    (models / f"{key}-{digest}.json").write_text(json.dumps({"train_seconds": 1.0}))
    lines = []
    row = bench.benchmark_detector(key, splits, quick=True, out=str(tmp_path), progress=False,
                                   overrides=overrides, log=lines.append)
    assert not marker.exists()
    assert not row["cached"] and any("unusable" in line for line in lines)
    assert isinstance(BaseDetector.load(row["model_path"]), ViolaJonesDetector)  # replaced by a safe file


# ----------------------------------------------------------------------------- killed writers
def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path, subprocess_env):
    target = tmp_path / "model.model"
    code = (f"import os, signal\nfrom pydetect._io import atomic_write\n"
            f"with atomic_write({str(target)!r}) as f:\n    f.write(b'half')\n    f.flush()\n"
            f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env, cwd=tmp_path, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = list(tmp_path.glob("model.model.*.tmp"))
    assert len(left) == 1 and not target.exists()
    others = [tmp_path / "other.model.abcd1234.tmp", tmp_path / "model.model.notes.tmp",
              tmp_path / "model.model.abcd1234.tmp.bak", tmp_path / "model.model.x.abcd1234.tmp"]
    for p in others:
        p.write_bytes(b"keep")
    with atomic_write(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole" and not left[0].exists()
    assert all(p.read_bytes() == b"keep" for p in others)
    assert sorted(os.listdir(tmp_path)) == sorted([target.name] + [p.name for p in others])


class LossModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x):
        return {"loss": self.lin(x).pow(2).mean()}


def test_save_and_checkpoints_clear_stale_temp_files(vj, tmp_path):
    stale = [tmp_path / "vj.model.k1ll3d_0.tmp", tmp_path / "toy.ckpt.abcdefgh.tmp"]
    for p in stale:
        p.write_bytes(b"left by a killed run")
    vj.save(tmp_path / "vj.model")
    engine.train_loop(LossModel(), lambda *a: (torch.ones(4, 2),), max_iter=1, seconds=1e9, lr=0.1,
                        checkpoint_path=tmp_path / "toy.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["toy.ckpt", "vj.model"]


@pytest.mark.parametrize("name", ["ViolaJonesDetector", "ImplicitShapeModel", "RCNN", "FastRCNN", "FasterRCNN",
                                  "OverFeat", "YOLO", "SSD"])
def test_sklearn_clone_and_set_params(name):
    # scikit-learn's clone rebuilds an estimator from get_params() and checks that every
    # parameter comes back as the very object given: it fails on a constructor that changes
    # or drops a parameter, and on a missing get_params / set_params.
    base = pytest.importorskip("sklearn.base")
    from pydetect import detectors

    cls = getattr(detectors, name)
    det = cls(progress=True)
    twin = base.clone(det)
    assert type(twin) is cls and twin is not det and twin.get_params() == det.get_params()
    assert det.set_params(progress=False) is det and det.progress is False
    assert base.clone(det).progress is False
    with pytest.raises(ValueError, match="no parameter 'colour'"):
        det.set_params(colour=1)
