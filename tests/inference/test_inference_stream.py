"""Streaming detection over a folder: same results as a plain loop, in-process and in worker
processes; a killed run resumes without redoing or duplicating images; the CLI."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pydetect.cli import main
from pydetect.inference import detect_folder, expand_inputs, predict_tiled
from pydetect.inference.engines import ImagePredictor

cv2 = pytest.importorskip("cv2")
N_IMAGES = 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """20 faces_in_clutter images as PNG files, a saved face detector, and the COCO results of
    a plain loop over the sorted files (image ids from 1)."""
    from pydetect import data
    from pydetect.data import read_image
    from pydetect.detectors import ViolaJonesDetector

    root = tmp_path_factory.mktemp("stream")
    images = root / "images"
    images.mkdir()
    for i, (image, _) in enumerate(data.faces_in_clutter("test", n_images=N_IMAGES)):
        cv2.imwrite(str(images / f"face_{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    detector = ViolaJonesDetector.from_cascade(cv2.data.haarcascades + "haarcascade_frontalface_default.xml",
                                               class_name="face")
    model = root / "faces.model"
    detector.save(model)
    expected = []
    for image_id, path in enumerate(sorted(images.iterdir()), start=1):
        expected += detector.predict(read_image(path)).to_coco(image_id)
    return {"images": images, "model": model, "detector": detector, "expected": expected}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def log_ids(out):
    with open(out / "results.jsonl") as f:
        return [json.loads(line)["id"] for line in f]


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_gives_the_plain_loop_results(folder, tmp_path, workers):
    out = tmp_path / "out"
    summary = detect_folder(folder["model"], folder["images"], out, workers=workers, progress=False)
    assert summary["done"] == N_IMAGES and not summary["failed"]
    assert read_json(out / "results.json") == folder["expected"]
    assert sorted(log_ids(out)) == list(range(1, N_IMAGES + 1))
    index = read_json(out / "images.json")
    assert [im["id"] for im in index] == list(range(1, N_IMAGES + 1))
    assert [os.path.basename(im["file_name"]) for im in index] == sorted(os.listdir(folder["images"]))
    assert sum(im["detections"] for im in index) == len(folder["expected"])


def test_killed_run_resumes_without_redoing_or_duplicating(folder, tmp_path, subprocess_env, monkeypatch):
    out = tmp_path / "out"
    # A child process killed outright (SIGKILL) while detecting its 8th image.
    code = textwrap.dedent(f"""
        import os, signal
        from pydetect.inference import detect_folder
        from pydetect.inference.engines import ImagePredictor

        detect = ImagePredictor.detect
        calls = []

        def dying(self, task, image):
            calls.append(task["id"])
            if len(calls) == 8:
                os.kill(os.getpid(), signal.SIGKILL)
            return detect(self, task, image)

        ImagePredictor.detect = dying
        detect_folder({str(folder["model"])!r}, {str(folder["images"])!r}, {str(out)!r}, progress=False)
    """)
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env, cwd=tmp_path, capture_output=True,
                          timeout=300)
    assert done.returncode == -9, done.stderr.decode()
    assert log_ids(out) == list(range(1, 8)) and not (out / "results.json").exists()
    # The same call again runs the 13 other images only.
    seen = []
    detect = ImagePredictor.detect
    monkeypatch.setattr(ImagePredictor, "detect", lambda self, task, image: seen.append(task["id"]) or
                        detect(self, task, image))
    summary = detect_folder(folder["model"], folder["images"], out, progress=False)
    assert seen == list(range(8, N_IMAGES + 1)) and summary["done"] == N_IMAGES
    assert sorted(log_ids(out)) == list(range(1, N_IMAGES + 1))
    assert read_json(out / "results.json") == folder["expected"]


def test_a_line_cut_by_a_kill_is_dropped_and_its_image_redone(folder, tmp_path):
    out = tmp_path / "out"
    detect_folder(folder["model"], folder["images"], out, progress=False)
    log = out / "results.jsonl"
    text = log.read_bytes()
    log.write_bytes(text[:-15])  # the last record without its end
    (out / "results.json").unlink()
    summary = detect_folder(folder["model"], folder["images"], out, progress=False)
    assert summary["done"] == N_IMAGES
    assert log.read_bytes() == text  # the cut line replaced by the same record
    assert read_json(out / "results.json") == folder["expected"]


def test_a_finished_run_is_not_run_again_and_new_images_get_new_ids(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = sorted(folder["images"].iterdir())
    detect_folder(folder["model"], [str(p) for p in first[:12]], out, progress=False)
    seen = []
    detect = ImagePredictor.detect
    monkeypatch.setattr(ImagePredictor, "detect", lambda self, task, image: seen.append(task["id"]) or
                        detect(self, task, image))
    detect_folder(folder["model"], [str(p) for p in first[:12]], out, progress=False)
    assert seen == []
    # The whole folder: 8 more images, with the ids that follow.
    detect_folder(folder["model"], folder["images"], out, progress=False)
    assert seen == list(range(13, N_IMAGES + 1))
    assert read_json(out / "results.json") == folder["expected"]


def test_other_settings_in_the_same_directory_are_refused(folder, tmp_path):
    out = tmp_path / "out"
    detect_folder(folder["model"], folder["images"], out, progress=False)
    with pytest.raises(ValueError, match="score_threshold"):
        detect_folder(folder["model"], folder["images"], out, score_threshold=2.0, progress=False)


def test_unreadable_image_is_reported_and_retried(folder, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    good = sorted(folder["images"].iterdir())[:3]
    for p in good:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "zz_bad.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    argv = ["detect", "--model", str(folder["model"]), str(images), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydetect: error: 1 images") and "zz_bad.png" in err and len(err.strip().splitlines()) == 1
    index = read_json(out / "images.json")
    assert [("error" in im) for im in index] == [False, False, False, True]
    assert {r["image_id"] for r in read_json(out / "results.json")} <= {1, 2, 3}
    # Once readable, the image is run on the next call; the others are not run again.
    (images / "zz_bad.png").write_bytes(good[0].read_bytes())
    assert main(argv) == 0
    results = read_json(out / "results.json")
    assert [r for r in results if r["image_id"] == 4] == [dict(r, image_id=4) for r in results if r["image_id"] == 1]


def test_cli_tiled_detection_of_npy_images_from_a_glob(folder, tmp_path):
    from pydetect import data
    from pydetect.bench.ops import dataset_mosaic

    image, _, _ = dataset_mosaic(data.faces_in_clutter("test", n_images=6), (700, 900), seed=3)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", image)
    np.save(tmp_path / "in" / "b.npy", image[:, ::-1])
    out = tmp_path / "out"
    assert main(["detect", "--model", str(folder["model"]), str(tmp_path / "in" / "*.npy"), "--out", str(out),
                 "--tile", "256,320", "--overlap", "0.25", "--merge", "wbf", "--no-progress"]) == 0
    expected = []
    for image_id, name in enumerate(["a.npy", "b.npy"], start=1):
        dets = predict_tiled(folder["detector"], str(tmp_path / "in" / name), tile=(256, 320), overlap=0.25,
                             merge="wbf")
        expected += dets.to_coco(image_id)
    assert expected and read_json(out / "results.json") == expected
    assert not list(out.glob("*.png"))  # no drawing with tiles


def test_expand_inputs(tmp_path):
    for name in ("b.png", "a.jpg", "c.txt", "d.NPY"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.png").write_bytes(b"")
    got = expand_inputs([tmp_path, str(tmp_path / "**" / "*.png"), tmp_path / "c.txt"])
    assert [os.path.relpath(p, tmp_path) for p in got] == ["a.jpg", "b.png", "d.NPY", os.path.join("sub", "e.png"),
                                                           "c.txt"]
    with pytest.raises(FileNotFoundError, match="nothing"):
        expand_inputs([str(tmp_path / "nothing*.png")])


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"workers": -1}, ValueError, "workers"), ({"workers": 1.5}, TypeError, "workers"),
    ({"prefetch": 0}, ValueError, "prefetch"), ({"engine": "spark"}, ValueError, "engine"),
    ({"tile": 256, "draw": True}, ValueError, "draw"), ({"tile": 0}, ValueError, "tile"),
    ({"tile": 256, "merge": "soft"}, ValueError, "merge"), ({"score_threshold": "high"}, TypeError, "score_threshold"),
    ({"min_neighbors": -1}, ValueError, "min_neighbors"), ({"draw": "yes"}, TypeError, "draw"),
])
def test_bad_arguments(folder, tmp_path, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        detect_folder(folder["model"], folder["images"], tmp_path / "out", progress=False, **kwargs)


def test_missing_model_and_inputs(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        detect_folder(tmp_path / "nope.model", folder["images"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing"):
        detect_folder(folder["model"], tmp_path / "missing" / "*.png", tmp_path / "out")


def test_ray_engine_without_ray_is_a_one_line_error(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where ray is not installed
    argv = ["detect", "--model", str(folder["model"]), str(folder["images"]), "--out", str(tmp_path / "o"),
            "--engine", "ray", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydetect: error:") and "pydetect[ray]" in err and len(err.strip().splitlines()) == 1
