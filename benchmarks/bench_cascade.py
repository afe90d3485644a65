"""Cascade detection benchmark: pydetect's CascadeDetector vs cv2.CascadeClassifier
(Haar frontalface_default, the Haar tree cascades frontalface_alt2 and eye_tree_eyeglasses,
skimage's LBP face cascade) and skimage.feature.Cascade (LBP).

    python benchmarks/bench_cascade.py [--record] [--threads 1 2] [--quick]

Same grey image, scale factor 1.1, min_neighbors 3, same thread count for pydetect and
OpenCV (skimage's Cascade has no thread setting). Images are natural photos from
scikit-image tiled and resized to 640x480 and 1920x1080.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pydetect.bench.results import Table
from pydetect.bench.timing import set_threads, time_alternating

RESULTS = Path(__file__).with_name("RESULTS.md")


def test_image(width, height):
    import cv2
    from skimage import data

    tiles = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = [cv2.cvtColor(t, cv2.COLOR_RGB2GRAY) for t in tiles]
    h2 = height // 2
    row = lambda a, b: np.hstack([cv2.resize(a, (width // 2, h2), interpolation=cv2.INTER_AREA),
                                  cv2.resize(b, (width - width // 2, h2), interpolation=cv2.INTER_AREA)])
    img = np.vstack([row(tiles[0], tiles[1]), row(tiles[2], tiles[3])])
    return np.ascontiguousarray(cv2.resize(img, (width, height)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true", help="write the table to RESULTS.md")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="640x480 only, 3 repeats")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import cv2
    from skimage import data
    from skimage.feature import Cascade as SkCascade
    from pydetect.cascade import CascadeDetector

    haar = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    lbp_src = data.lbp_frontal_face_cascade_filename()
    tmp = tempfile.mkdtemp()
    lbp_fixed = os.path.join(tmp, "lbp.xml")  # cv2 needs skimage's <featuhreParams> typo fixed
    with open(lbp_fixed, "w") as f:
        f.write(open(lbp_src).read().replace("featuhreParams", "featureParams"))

    sizes = [(640, 480)] if args.quick else [(640, 480), (1920, 1080)]
    repeats = 3 if args.quick else args.repeats
    table = Table("CascadeDetector.detect vs cv2.CascadeClassifier.detectMultiScale")
    sk = SkCascade(lbp_src)
    for (w, h) in sizes:
        img = test_image(w, h)
        cases = [("haar frontalface_default", haar, haar), ("lbp frontalface", lbp_src, lbp_fixed)]
        # tree cascades (2- and 3-node trees, tilted features)
        for extra in ("haarcascade_frontalface_alt2.xml", "haarcascade_eye_tree_eyeglasses.xml"):
            p = os.path.join(cv2.data.haarcascades, extra)
            cases.append(("haar " + extra[len("haarcascade_"):-4] + " (trees)", p, p))
        for name, ours_path, cv_path in cases:
            det = CascadeDetector(ours_path)
            cc = cv2.CascadeClassifier(cv_path)
            for t in args.threads:
                set_threads(t)
                a = det.detect(img, 1.1, 3).boxes.astype(int)
                b = np.asarray(cc.detectMultiScale(img, 1.1, 3)).reshape(-1, 4)
                b[:, 2:] += b[:, :2]
                same = sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
                res = time_alternating({
                    "ours": lambda: det.detect(img, 1.1, 3),
                    "cv2": lambda: cc.detectMultiScale(img, 1.1, 3)}, repeats=repeats)
                table.add(f"{name} {w}x{h} ({len(a)} boxes, same={same})", t, res["ours"],
                          "cv2", res["cv2"])
        # scikit-image's Cascade scales the window, not the image; its own defaults differ,
        # so this compares speed at OpenCV's settings (step 1, 1.1), not output.
        for t in args.threads:
            set_threads(t)
            det = CascadeDetector(lbp_src)
            res = time_alternating({
                "ours": lambda: det.detect(img, 1.1, 3),
                "sk": lambda: sk.detect_multi_scale(img, scale_factor=1.1, step_ratio=1,
                                                    min_size=(24, 24), max_size=(w, h))},
                repeats=max(3, repeats // 2))
            table.add(f"lbp frontalface {w}x{h} vs skimage", t, res["ours"],
                      "skimage.feature.Cascade", res["sk"])
    if args.record:
        load = " / ".join(open("/proc/loadavg").read().split()[:3])
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        table.record(RESULTS, "cascade", notes=(
            "Ratio = pydetect / peer (below 1: pydetect faster). Same image, scale_factor 1.1, "
            "min_neighbors 3, same thread count for pydetect and cv2 (cv2.setNumThreads); "
            "`same=True`: identical boxes. Median of alternating runs after a warm-up, commit "
            f"{commit}; load average {load} (1 / 5 / 15 min) when the run ended (on a shared "
            "machine ratios are more reliable than absolute times).\n\n"
            "Where the speed comes from: the pyramid levels resized (bit-identical to cv2.resize "
            "INTER_LINEAR_EXACT) and their integral tables built level by level in one parallel "
            "native pass; features compiled inline into the stumps / nodes in "
            "evaluation order (int32 offsets into one packed buffer of every pyramid level), "
            "branch-free leaf selection, and four windows of a row evaluated together (vector "
            "lanes, bit-identical to one window at a time) with the stage bookkeeping (alive, "
            "stages passed, last sum) in vector masks: Haar stumps and LBP stumps while two "
            "windows are alive, Haar trees while one is (every node of a tree in the four lanes, "
            "each lane's leaf selected by vector blends from a table of the 2^nodes outcomes, "
            "no tree walk); LBP block sums from the 16 corners through row differences. With "
            "AVX2 (chosen at run time) LBP stumps run eight windows at a time with each stump's "
            "256-bit subset in one register (vpermd picks each lane's word, vpsrlvd its bit), "
            "and the step-2 levels are read from tables split by column parity (one load per "
            "corner for the eight lanes).\n\n"
            "scikit-image's Cascade is single-threaded and scans differently (window scaled, not "
            "the image): its 1-thread rows are the like-for-like ones."))

if __name__ == "__main__":
    main()
