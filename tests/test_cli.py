import json
import subprocess
import sys

import pytest

from pydetect.cli import main


def test_export_dataset_then_eval_ground_truth_as_results(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["export-dataset", "faces", "--split", "test", "--n-images", "4", "--out", str(out)]) == 0
    gt = json.loads((out / "annotations.json").read_text())
    assert len(gt["images"]) == 4 and len(list((out / "images").iterdir())) == 4
    assert gt["annotations"] and {"bbox", "category_id", "image_id"} <= set(gt["annotations"][0])
    # The ground truth given back as detections must score a perfect AP.
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    (tmp_path / "res.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["eval", "--gt", str(out / "annotations.json"), "--results", str(tmp_path / "res.json"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("argv, fragment", [
    (["eval", "--gt", "/nonexistent/gt.json", "--results", "/nonexistent/r.json"], "nonexistent"),
    (["export-dataset", "digits", "--n-images", "-3", "--out", "x"], "n_images"),
])
def test_errors_are_one_line_without_traceback(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydetect: error:") and fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_json(tmp_path, capsys):
    bad = tmp_path / "gt.json"
    bad.write_text("{not json")
    assert main(["eval", "--gt", str(bad), "--results", str(bad)]) == 2
    assert "gt.json" in capsys.readouterr().err


def test_python_dash_m_help(tmp_path, subprocess_env):
    done = subprocess.run([sys.executable, "-m", "pydetect", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=subprocess_env)
    assert done.returncode == 0 and "export-dataset" in done.stdout and "eval" in done.stdout


def test_detect_with_an_opencv_cascade(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    skdata = pytest.importorskip("skimage.data")
    import numpy as np

    from pydetect.cascade import Cascade, CascadeDetector

    image_path = tmp_path / "astronaut.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    out = tmp_path / "out"
    assert main(["detect", "--cascade", xml, str(image_path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    # The same boxes as the library call (which equals cv2's detectMultiScale, tested elsewhere).
    expected = CascadeDetector(Cascade.load(xml)).detect(skdata.astronaut())
    assert len(results) == len(expected) >= 1
    np.testing.assert_allclose([r["bbox"] for r in results],
                               [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in expected.boxes.tolist()])
    assert all(r["image_id"] == 1 for r in results)
    annotated = cv2.imread(str(out / "astronaut.png"))
    assert annotated.shape == (512, 512, 3)
    assert not np.array_equal(annotated, cv2.imread(str(image_path)))  # boxes were drawn
    listing = json.loads((out / "images.json").read_text())
    assert listing[0]["id"] == 1 and listing[0]["detections"] == len(results)


def test_detect_bad_model_file(tmp_path, capsys):
    bogus = tmp_path / "model.pkl"
    bogus.write_bytes(b"not a model")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["detect", "--model", str(bogus), str(image), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydetect: error:") and "model.pkl" in err and len(err.strip().splitlines()) == 1


def test_bench_ops_runs_and_names_missing_peers(tmp_path, capsys, monkeypatch):
    import sys

    pytest.importorskip("cv2")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a machine without torchvision
    out = tmp_path / "ops.json"
    assert main(["bench", "ops", "--quick", "--family", "integral", "boxes", "--repeats", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {r["family"] for r in rows} == {"integral", "boxes"}
    opencv = [r for r in rows if r["peer"] == "OpenCV integral"]
    assert opencv and all(r["agree"] is True for r in opencv)
    assert "torchvision" in report["missing"] and "Peers not installed" in printed and "torchvision" in printed


def test_bench_ops_rejects_unknown_family(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "ops", "--family", "yolo"])
    assert "invalid choice: 'yolo'" in capsys.readouterr().err
