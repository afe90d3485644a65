"""`pydetect bench detectors` and `pydetect train`: real runs on tiny budgets, report contents, errors."""

import contextlib
import json
import os

import numpy as np
import pytest

from pydetect import cli
from pydetect.bench import detectors as bench

pytest.importorskip("cv2")
pytest.importorskip("matplotlib")

# Budgets small enough for the test suite: every detector trains for a few seconds.
TINY = {
    "viola_jones": ["num_stages=3", "max_weak_count=5", "num_pos=80", "num_neg=80", "max_features=400",
                    "time_limit=None"],
    "ism": ["max_train_features=1500", "max_agglomerative=500"],
    "overfeat": ["window=30", "widths=(8,16)", "hidden=16", "copies=1", "mining_rounds=1", "train_seconds=2",
                 "max_iter=6", "regression_seconds=1", "regression_iter=3", "batch_size=8"],
    "yolo": ["pretrain__seconds=2", "pretrain__epochs=1", "train_seconds=2", "max_iter=4"],
    "ssd": ["pretrain__seconds=2", "pretrain__epochs=1", "train_seconds=2", "max_iter=4"],
    "rcnn": ["pretrain__seconds=2", "pretrain__epochs=1", "hard_negative_rounds=0", "train_proposals=30",
             "test_proposals=30"],
    "fast_rcnn": ["pretrain__seconds=2", "pretrain__epochs=1", "train_seconds=2", "max_iter=4",
                  "train_proposals=40", "test_proposals=30"],
    "faster_rcnn": ["pretrain__seconds=2", "pretrain__epochs=1", "train_seconds=2", "max_iter=4"],
}


def _set_args(keys):
    out = []
    for key in keys:
        for setting in TINY[key]:
            out += ["--set", f"{key}.{setting}"]
    return out


def _png_shape(path):
    import cv2

    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable image"
    return img.shape


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--threads", "2", "bench", "detectors", "--dataset", "faces", "--quick", "--n-train", "10",
            "--n-eval", "4", "--out", str(out), "--no-progress"] + _set_args(bench.DETECTORS)
    assert cli.main(argv) == 0
    return out, argv


def test_bench_detectors_writes_the_report(faces_run, capsys):
    out, _ = faces_run
    report = json.loads((out / "report.json").read_text())
    keys = [r["key"] for r in report["rows"]]
    assert keys == list(bench.DETECTORS) + ["opencv_frontalface"]  # faces adds the OpenCV reference
    assert report["budget"] == "quick" and not report["budget_counted"]
    assert report["cores"] == os.cpu_count() and report["threads"] == 2
    assert "4 test images" in report["data"] and report["class_names"] == ["face"]
    for r in report["rows"]:
        for name in ("AP", "AP50", "AP75"):
            assert 0.0 <= r["coco"][name] <= 1.0
        assert r["infer_ms_per_image"] > 0 and r["model_bytes"] == os.path.getsize(r["model_path"])
        assert (r["train_seconds"] > 0) == (r["key"] != "opencv_frontalface")
        # The plotted curve is the table's AP50: COCO AP50 is the mean precision at 101 recall points.
        assert np.mean(r["pr"]["precision"]) == pytest.approx(r["coco"]["AP50"], abs=1e-9)
    md = (out / "report.md").read_text()
    assert "quick budget" in md and "parameters overridden" in md
    # How far each training went (iterations, pretraining epochs, cascade stages), and which
    # stages their 2-second time budgets ended before their counts.
    rows = {r["key"]: r for r in report["rows"]}
    counted = {key: r["train_iterations"] for key, r in rows.items()}
    assert 1 <= counted["faster_rcnn"] <= 4 and 1 <= counted["fast_rcnn"] <= 4  # max_iter=4, 2 s
    assert 1 <= counted["yolo"] <= 4 and 1 <= counted["ssd"] <= 4
    assert 2 <= counted["overfeat"] <= 6  # two rounds share max_iter=6
    assert counted["viola_jones"] is None and counted["ism"] is None
    assert len(rows["viola_jones"]["cascade_stages"]) == 1 and 1 <= rows["viola_jones"]["cascade_stages"][0] <= 3
    for key in ("yolo", "ssd", "rcnn", "fast_rcnn", "faster_rcnn"):
        epochs, cut = rows[key]["pretrain_epochs"], rows[key]["cut_by_clock"]
        assert 0 <= epochs <= 1 and ("pretraining" in cut) == (epochs < 1)
    for key in ("yolo", "ssd", "fast_rcnn", "faster_rcnn"):
        assert ("detection" in rows[key]["cut_by_clock"]) == (counted[key] < 4)
    assert rows["ism"]["pretrain_epochs"] is None and rows["ism"]["cut_by_clock"] == []
    faster = rows["faster_rcnn"]
    assert (f"Faster R-CNN {faster['pretrain_epochs']:.3g} pretraining epoch" in md
            and f"+ {faster['train_iterations']:,} iteration" in md)
    assert ("Stopped by its time budget" in md) == any(r["cut_by_clock"] for r in rows.values())
    for r in report["rows"]:
        assert f"| {r['name']} | {r['coco']['AP']:.3f} | {r['coco']['AP50']:.3f} |" in md
    gap = rows["yolo"]["coco"]["AP50"] - rows["faster_rcnn"]["coco"]["AP50"]
    assert "Speed and accuracy, one stage against two" in md and f"with AP50 {gap:+.3f}" in md
    for plot in ("pr_curves.png", "speed_accuracy.png", "samples.png"):
        h, w, _ = _png_shape(out / plot)
        assert h > 100 and w > 100


def test_bench_reference_row_is_opencvs_cascade(faces_run):
    """The OpenCV row equals OpenCV's own detectMultiScale2 ranked by neighbours, evaluated independently."""
    import cv2

    from pydetect import Detections
    from pydetect.eval import voc_evaluate

    out, _ = faces_run
    report = json.loads((out / "report.json").read_text())
    row = next(r for r in report["rows"] if r["key"] == "opencv_frontalface")
    test = bench.load_splits("faces", quick=True, n_eval=4).evaluation
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    dets = []
    for image, _ in test:
        rects, counts = cascade.detectMultiScale2(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), scaleFactor=1.1,
                                                  minNeighbors=1)
        b = np.asarray(rects, np.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        dets.append(Detections(b, scores=np.asarray(counts, np.float32).reshape(-1), labels=np.zeros(len(b), np.int64)))
    assert row["voc"]["mAP"] == pytest.approx(voc_evaluate(test, dets)["mAP"], abs=1e-12)


def test_bench_detectors_second_run_loads_the_cache(faces_run, capsys):
    out, argv = faces_run
    before = json.loads((out / "report.json").read_text())
    assert cli.main(argv + ["--detectors", "ism,faster_rcnn"]) == 0
    printed = capsys.readouterr().out
    assert "loaded" in printed and ": training " not in printed
    after = json.loads((out / "report.json").read_text())
    assert [r["key"] for r in after["rows"]] == ["ism", "faster_rcnn", "opencv_frontalface"]
    for r in after["rows"]:
        old = next(o for o in before["rows"] if o["key"] == r["key"])
        assert r["cached"] and r["train_seconds"] == old["train_seconds"]
        assert r["coco"]["AP"] == old["coco"]["AP"]  # the cached model predicts the same


def test_bench_detectors_on_val_reuses_the_models_and_evaluates_val(faces_run, capsys):
    out, argv = faces_run
    assert cli.main(argv + ["--detectors", "ism", "--eval-split", "val"]) == 0
    printed = capsys.readouterr().out
    assert "loaded" in printed and ": training " not in printed  # the model depends on train only
    report = json.loads((out / "report.json").read_text())
    assert report["eval_split"] == "val" and "4 val images" in report["data"]
    assert "(val split)" in (out / "report.md").read_text()


def test_cache_key_covers_code_training_data_and_parameters(monkeypatch):
    splits = bench.load_splits("faces", n_train=3, n_eval=1)
    other_train = bench.load_splits("faces", n_train=3, n_eval=1, seed=1)
    other_eval = bench.load_splits("faces", n_train=3, n_eval=2, eval_split="val")
    det = bench.build_detector("ism", {})
    key = bench._cache_key("ism", det, splits)
    assert bench._cache_key("ism", det, other_eval) == key  # evaluation data is not part of it
    assert bench._cache_key("ism", det, other_train) != key
    assert bench._cache_key("ism", bench.build_detector("ism", {"max_train_features": 7}), splits) != key
    monkeypatch.setattr(bench, "code_fingerprint", lambda: "other code")
    assert bench._cache_key("ism", det, splits) != key


def test_code_fingerprint_follows_every_source_file(tmp_path, monkeypatch):
    import shutil

    import pydetect

    root = tmp_path / "pydetect"
    shutil.copytree(os.path.dirname(pydetect.__file__), root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pydetect, "__file__", str(root / "__init__.py"))
    bench.code_fingerprint.cache_clear()
    try:
        before = bench.code_fingerprint()
        with open(root / "eval" / "voc.py", "a") as f:
            f.write("\n# a change\n")
        bench.code_fingerprint.cache_clear()
        assert bench.code_fingerprint() != before
    finally:
        bench.code_fingerprint.cache_clear()


def test_bench_detectors_on_a_coco_file(tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert cli.main(["export-dataset", "digits", "--split", "train", "--n-images", "12", "--out", str(data_dir)]) == 0
    out = tmp_path / "bench"
    assert cli.main(["bench", "detectors", "--dataset", str(data_dir / "annotations.json"), "--detectors",
                     "viola_jones", "--out", str(out), "--no-progress"] + _set_args(["viola_jones"])) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["budget"] == "full" and "8 train / 2 test images" in report["data"]  # 20% test, 20% val
    assert [r["key"] for r in report["rows"]] == ["viola_jones"]
    assert "Viola-Jones" in capsys.readouterr().out


def test_train_verb_saves_a_model_that_predicts_the_same(tmp_path, capsys):
    from pydetect.detectors import BaseDetector, ImplicitShapeModel
    from pydetect.eval import coco_evaluate

    model = tmp_path / "ism.pkl"
    argv = ["train", "ism", "--dataset", "faces", "--n-train", "8", "--n-test", "3", "--out", str(model)]
    for setting in TINY["ism"]:
        argv += ["--set", setting]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    det = BaseDetector.load(model)
    assert isinstance(det, ImplicitShapeModel) and det.max_train_features == 1500
    test = bench.load_splits("faces", n_eval=3).evaluation
    ap = coco_evaluate(test, det.predict_batch([image for image, _ in test]))["AP"]
    assert f"COCO AP {ap:.3f}" in printed


@pytest.mark.parametrize("argv, message", [
    (["train", "detr", "--out", "m.pkl"], "invalid choice: 'detr'"),
    (["train", "ism", "--out", "m.pkl", "--set", "nonsense"], "--set expects NAME=VALUE"),
    (["train", "ism", "--out", "m.pkl", "--set", "colour=1"], "ImplicitShapeModel has no parameter 'colour'"),
    (["train", "ism", "--out", "m.pkl", "--dataset", "missing.json"], "missing.json: no such file"),
    (["train", "ism", "--out", "m.pkl", "--dataset", "pets"], "dataset must be 'digits', 'faces' or a COCO JSON"),
    (["bench", "detectors", "--detectors", "ism,detr"], "unknown detector 'detr'"),
    (["bench", "detectors", "--set", "ism=3"], "--set expects DETECTOR.PARAM=VALUE"),
    (["bench", "detectors", "--n-eval", "0"], "n_eval"),
    (["bench", "detectors", "--eval-split", "train"], "invalid choice: 'train'"),
])
def test_cli_bad_arguments_one_line_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if "invalid choice" in message else contextlib.nullcontext():
        code = cli.main(argv)
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not os.path.exists(tmp_path / "m.pkl")


def test_malformed_coco_json_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1}], "annotations": []')
    assert cli.main(["bench", "detectors", "--dataset", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pydetect: error:") and "bad.json" in err[0]


def test_training_extent_names_the_stages_a_clock_ended():
    """training_extent against hand-made fitted states: a stage is cut when it stopped short of its count."""
    from types import SimpleNamespace as Fitted

    from pydetect.detectors import Pretraining

    done = Fitted(pretrain=Pretraining(epochs=10), pretrain_epochs_=10.0, history_={"iterations": 50, "max_iter": 50})
    assert bench.training_extent(done) == {"iterations": 50, "pretrain_epochs": 10.0, "cascade_stages": None,
                                           "cut_by_clock": []}
    short = Fitted(pretrain=Pretraining(epochs=10), pretrain_epochs_=7.4, history_={"iterations": 40, "max_iter": 50})
    assert bench.training_extent(short)["cut_by_clock"] == ["pretraining", "detection"]
    rounds = [{"iterations": 6, "max_iter": 6}, {"iterations": 3, "max_iter": 4}]  # OverFeat's classifier rounds
    overfeat = Fitted(history_={"iterations": 9, "rounds": rounds, "regression": {"iterations": 5, "max_iter": 5}})
    assert bench.training_extent(overfeat)["cut_by_clock"] == ["detection"]
    overfeat.history_ = {"iterations": 10, "rounds": rounds[:1] * 2, "regression": {"iterations": 2, "max_iter": 5}}
    assert bench.training_extent(overfeat)["cut_by_clock"] == ["regression"]
    cascades = Fitted(training_logs_=[[{}] * 3, [{}] * 2], stop_reasons_=["3 stages trained", "time limit of 84 s reached"])
    assert bench.training_extent(cascades) == {"iterations": None, "pretrain_epochs": None, "cascade_stages": [3, 2],
                                               "cut_by_clock": ["cascades"]}
    old_file = Fitted(history_={"iterations": 5})  # written before the counts were recorded
    assert bench.training_extent(old_file)["cut_by_clock"] == []


def test_recipe_rejects_unknown_names():
    with pytest.raises(ValueError, match="detector must be one of"):
        bench.recipe("detr", "digits", quick=True)
    with pytest.raises(ValueError, match="dataset_kind"):
        bench.recipe("ism", "cats", quick=True)
    assert bench.recipe("viola_jones", "digits", quick=False)["window"] == (24, 16)


def test_the_full_budget_on_digits_is_counted_and_its_clocks_are_caps():
    """On digits the full budget is iterations / epochs / stages, and each time setting it
    replaces is CLOCK_CAP times the wall-clock budget it was; elsewhere the budgets stay wall-clock."""
    from pydetect import detectors

    counted = {"viola_jones": ["num_stages"], "overfeat": ["max_iter", "regression_iter"], "rcnn": ["pretrain__epochs"],
               **{k: ["pretrain__epochs", "max_iter"] for k in ("yolo", "ssd", "fast_rcnn", "faster_rcnn")}}
    clocks = {"viola_jones": {"time_limit": 840.0}, "overfeat": {"train_seconds": 300.0, "regression_seconds": 45.0},
              "rcnn": {"pretrain__seconds": 120.0},
              **{k: {"pretrain__seconds": 90.0, "train_seconds": 780.0} for k in ("yolo", "ssd", "fast_rcnn",
                                                                                   "faster_rcnn")}}
    for key, names in counted.items():
        full = bench.recipe(key, "digits", quick=False)
        assert all(isinstance(full[name], int) and full[name] >= 1 for name in names), key
        assert {name: full[name] for name in clocks[key]} == {n: bench.CLOCK_CAP * v for n, v in clocks[key].items()}
        cls = getattr(detectors, bench._CLASS_NAMES[key])
        defaults = cls().get_params(deep=True)
        assert all(defaults[n] == v for n, v in clocks[key].items() if key != "viola_jones")  # the library's budget
        cls().set_params(**full)  # every name is a parameter
        assert not set(names) & set(bench.recipe(key, "faces", quick=False))
        assert not set(names) & set(bench.recipe(key, "digits", quick=True)) - {"pretrain__epochs"}


def test_the_report_says_whether_the_full_budget_was_counted():
    """report.md names the budget the rows were trained at: counted on digits, wall-clock elsewhere,
    and, from a run's rows, how far each training went."""
    from pydetect.bench.report import _markdown

    row = {"key": "yolo", "name": "YOLO", "detector": "YOLO()", "cached": False, "train_iterations": 3500,
           "pretrain_epochs": 4.0, "cascade_stages": None, "cut_by_clock": [], "train_seconds": 900.0,
           "infer_ms_per_image": 20.0, "model_bytes": 1000, "coco": {"AP": 0.4, "AP50": 0.7, "AP75": 0.4},
           "voc": {"mAP": 0.7, "AP50": {}}}
    report = {"load_average_start": 0.1, "load_average_end": 0.2, "budget": "full", "dataset": "digits",
              "date": "d", "machine": "m", "threads": 2, "pydetect": "0", "wall_seconds": 60.0, "data": "x",
              "class_names": [], "rows": [row]}
    assert "wall-clock training budget" in _markdown(report)
    md = _markdown({**report, "budget_counted": True})
    assert "counted in iterations" in md and "YOLO 4 pretraining epochs + 3,500 iterations." in md
    assert "Stopped by its time budget" not in md
    cut = _markdown({**report, "rows": [{**row, "pretrain_epochs": 2.03, "cut_by_clock": ["pretraining"]}]})
    assert "YOLO 2.03 pretraining epochs" in cut and "before its count**: YOLO (pretraining)" in cut
