"""PYDETECT_SIMD: the environment switch that forces the kernels' narrower SIMD paths.

Each level runs in a child interpreter (the variable is read once per process): the child
reports ``ops.simd_level()`` and saves integral images, Haar feature values and cascade
(Haar and LBP) detections of a few images, which must be bit-identical across levels. They
can be: the integral tables hold integers (exact in any order of addition), and the
cascade's four- and eight-window paths repeat the one-window path's float operations lane by
lane, so its stage sums (float64) are equal too, not merely close.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pydetect import ops

cv2 = pytest.importorskip("cv2", reason="the cascades are OpenCV's pretrained ones")
pytest.importorskip("skimage.data", reason="a test photograph")

_CHILD = textwrap.dedent("""
    import sys

    import cv2
    import numpy as np

    from pydetect import ops
    from pydetect.cascade import Cascade, CascadeDetector, HaarFeatures
    from skimage.data import astronaut

    out = {"level": np.array(ops.simd_level())}
    rng = np.random.default_rng(7)
    # widths around the 16-pixel blocks (scalar tails), and rows past 33025 pixels, where
    # the squared sums' carries leave int32
    for i, shape in enumerate([(5, 1), (7, 15), (9, 16), (6, 33), (31, 47), (64, 301), (3, 33100)]):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        img[:, -3:] = 255
        s, q, t = ops.integral_image(img, squared=True, tilted=True)
        out[f"integral{i}"], out[f"squared{i}"], out[f"tilted{i}"] = s, q, t
        out[f"integral64_{i}"] = ops.integral_image(img, dtype=np.int64)
        out[f"integralf_{i}"] = ops.integral_image(img, dtype=np.float64)
    windows = rng.integers(0, 256, (40, 24, 24), dtype=np.uint8)
    bank = HaarFeatures((24, 24), mode="all")
    features = np.arange(0, len(bank), 97)
    out["haar"] = bank.compute(windows, features=features)
    out["haar_raw"] = bank.compute(windows, normalize=False, features=features)
    scenes = [rng.integers(0, 256, (120, 160), dtype=np.uint8)]
    scenes.append(cv2.GaussianBlur(rng.integers(0, 256, (150, 130), dtype=np.uint8), (5, 5), 2))
    scenes.append(cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY), (200, 200), interpolation=cv2.INTER_AREA))
    from skimage.data import lbp_frontal_face_cascade_filename
    # the LBP cascade: four windows at a time (sse2), eight (avx2) or one (scalar)
    cascades = {name: cv2.data.haarcascades + name
                for name in ("haarcascade_frontalface_default.xml", "haarcascade_eye.xml")}
    cascades["lbp"] = lbp_frontal_face_cascade_filename()
    for name, path in cascades.items():
        det = CascadeDetector(Cascade.load(path))
        for i, img in enumerate(scenes):
            for mn in (0, 3):
                d = det.detect(img, scale_factor=1.1, min_neighbors=mn, return_levels=True)
                key = f"{name}_{i}_{mn}"
                out[key + "_boxes"], out[key + "_scores"] = d.boxes, d.scores
                out[key + "_levels"], out[key + "_weights"] = d.reject_levels, d.level_weights
            out[f"{name}_{i}_accepted"] = det.cascade.accepts(det.accepted_windows(img)[0])
    np.savez(sys.argv[1], **out)
""")


def _run(level, tmp_path, env):
    path = tmp_path / f"{level or 'unset'}.npz"
    env = dict(env)
    env.pop("PYDETECT_SIMD", None)
    if level is not None:
        env["PYDETECT_SIMD"] = level
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(path) as data:
        return dict(data), done.stderr


def test_levels_report_and_agree(tmp_path, subprocess_env):
    auto, _ = _run(None, tmp_path, subprocess_env)
    assert str(auto["level"]) == ops.simd_level()
    results = {"auto": auto}
    for level in ("scalar", "sse2", "avx2"):
        results[level], err = _run(level, tmp_path, subprocess_env)
        assert "PYDETECT_SIMD" not in err
    assert str(results["scalar"]["level"]) == "scalar"
    assert str(results["sse2"]["level"]) == ("scalar" if ops.simd_level() == "scalar" else "sse2")
    # avx2 on a CPU without it falls back to the widest level the CPU has: auto's
    assert str(results["avx2"]["level"]) == str(auto["level"])
    assert sum(k.endswith("_boxes") and len(v) > 0 for k, v in auto.items()) >= 3, "the scenes found nothing"
    for level, got in results.items():
        assert got.keys() == auto.keys()
        for key, want in auto.items():
            if key != "level":
                np.testing.assert_array_equal(got[key], want, err_msg=f"{key} at PYDETECT_SIMD={level}")
    # and the plain loops are right, not merely equal to the vector paths
    for i in range(7):
        s = results["scalar"][f"integral{i}"]
        img = np.diff(np.diff(s.astype(np.int64), axis=0), axis=1)
        ref = np.zeros_like(s, dtype=np.int64)
        ref[1:, 1:] = img.cumsum(0).cumsum(1)
        np.testing.assert_array_equal(s, ref)
        np.testing.assert_array_equal(results["scalar"][f"squared{i}"][1:, 1:],
                                      (img.astype(np.float64) ** 2).cumsum(0).cumsum(1))


@pytest.mark.parametrize("value", ["AVX2", "sse", "none", " scalar"])
def test_unknown_value_warns_and_runs_auto(value, subprocess_env):
    env = dict(subprocess_env, PYDETECT_SIMD=value)
    done = subprocess.run([sys.executable, "-c", "from pydetect import ops; print(ops.simd_level())"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=os.path.dirname(__file__))
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == ops.simd_level()
    assert "RuntimeWarning" in done.stderr and "PYDETECT_SIMD" in done.stderr
    assert "auto, avx2, sse2, scalar" in done.stderr and repr(value) in done.stderr
