"""The Ray engine of detect_folder: the same COCO results as the local run, on a local
single-node cluster started by the test (skipped without ray[data])."""

import json
import os

import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")
cv2 = pytest.importorskip("cv2")

from pydetect.inference import detect_folder  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    import ray

    # Ray's workers start in the driver's working directory and put it first on sys.path: run
    # from a source checkout, its unbuilt pydetect/ would shadow the installed package there.
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray-workdir"))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        os.chdir(before)
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_local_results_and_resumes_a_local_run(ray_cluster, tmp_path):
    from pydetect import data
    from pydetect.detectors import ViolaJonesDetector

    images = tmp_path / "images"
    images.mkdir()
    for i, (image, _) in enumerate(data.faces_in_clutter("test", n_images=12)):
        cv2.imwrite(str(images / f"face_{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    model = tmp_path / "faces.model"
    ViolaJonesDetector.from_cascade(cv2.data.haarcascades + "haarcascade_frontalface_default.xml",
                                    class_name="face").save(model)
    local = detect_folder(model, images, tmp_path / "local", progress=False)
    remote = detect_folder(model, images, tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert remote["done"] == 12 and not remote["failed"]
    with open(local["results"]) as a, open(remote["results"]) as b:
        expected = a.read()
        assert b.read() == expected and json.loads(expected)
    # A local run stopped after 5 images (its log cut there), finished on Ray.
    mixed = tmp_path / "mixed"
    detect_folder(model, sorted(images.iterdir())[:5], mixed, progress=False)
    summary = detect_folder(model, images, mixed, engine="ray", workers=2, progress=False)
    with open(summary["log"]) as f:
        assert sorted(json.loads(line)["id"] for line in f) == list(range(1, 13))
    with open(summary["results"]) as f:
        assert f.read() == expected
