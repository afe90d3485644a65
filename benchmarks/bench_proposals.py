"""Selective search: pydetect vs OpenCV contrib (cv2.ximgproc) and the `selectivesearch` package.

pydetect's modes follow the paper's segmentation parameters (k = 50, 100, 150, 300, min
component size = k); OpenCV's presets use others (k = 200 for single, 150/300/450 for fast,
150...750 for quality, min size 100) and return fewer boxes. So every comparison is made
twice: pydetect as shipped ("paper k") and pydetect run with OpenCV's parameters through
`ops.selective_search(..., scales=..., min_size=...)` ("OpenCV k").

1. Time per image on natural photos shrunk to 500 px (longer side): pydetect (paper k),
   pydetect (OpenCV k) and OpenCV's single strategy / switchToSelectiveSearchFast /
   switchToSelectiveSearchQuality, calls interleaved in one process at the same thread
   count (warm-up, then the median of --repeats rounds), with the boxes each returns; and
   pydetect's single mode against the `selectivesearch` package (pure Python, one strategy)
   where it is installed.
2. Proposal quality on the digits_in_clutter and faces_in_clutter --split (default val):
   recall at IoU 0.5 and 0.7 and MABO (Uijlings et al.), pydetect.eval.proposal_recall.
   The like-for-like table cuts both lists of an image to the same number of boxes (the
   smaller of the two counts: OpenCV's count for pydetect at paper k); the second table caps
   every list at 500, 1000 and 2000 boxes, where a method that returns more boxes has an
   advantage. Proposals are cached in --cache, so an interrupted run resumes.

Needs opencv-contrib-python-headless (and optionally selectivesearch), which conflict with
the shared venv's opencv-python-headless: run from a venv that has them, with pydetect on
PYTHONPATH:

    PYTHONPATH=. /work/venv-ss/bin/python benchmarks/bench_proposals.py [--images 50]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import statistics
import tempfile
import warnings

import numpy as np

import pydetect
from pydetect import ops
from pydetect.bench.timing import load_average, machine, time_alternating

BUDGETS = (500, 1000, 2000)
MODES = ("single", "fast", "quality")
# OpenCV-contrib's presets as pydetect parameters: switchToSingleStrategy(k=200),
# switchToSelectiveSearchFast/Quality(base_k=150, inc_k=150) (k <= base_k + 2 or 4 inc_k),
# sigma 0.8, and createGraphSegmentation's min_size=100. Colour spaces and similarity
# strategies are the paper's in both libraries.
OPENCV_PARAMS = {
    "single": {"scales": (200,), "min_size": 100},
    "fast": {"scales": (150, 300, 450), "min_size": 100},
    "quality": {"scales": (150, 300, 450, 600, 750), "min_size": 100},
}
# Method keys: pydetect as shipped, pydetect with OpenCV's parameters, OpenCV.
LABELS = {"pydetect": "pydetect (paper k)", "pydetect_cvk": "pydetect (OpenCV k)", "opencv": "OpenCV"}


def load_peers():
    peers = {}
    try:
        import cv2

        if hasattr(cv2, "ximgproc"):
            peers["cv2"] = cv2
        else:
            print("cv2 has no ximgproc (opencv-contrib not installed): OpenCV skipped")
    except ImportError:
        print("cv2 not installed: OpenCV skipped")
    try:
        import selectivesearch

        peers["selectivesearch"] = selectivesearch
    except ImportError:
        print("selectivesearch not installed: skipped")
    return peers


def opencv_proposals(cv2, image, mode):
    """OpenCV's boxes (its own order) as float xyxy."""
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV wants BGR
    {"single": ss.switchToSingleStrategy, "fast": ss.switchToSelectiveSearchFast,
     "quality": ss.switchToSelectiveSearchQuality}[mode]()
    rects = ss.process().astype(np.float32).reshape(-1, 4)
    rects[:, 2:] += rects[:, :2]
    return rects


def selectivesearch_proposals(pkg, image, **kw):
    """The package's regions as float xyxy, in its output order, duplicates dropped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, regions = pkg.selective_search(image, **kw)
    boxes = np.array([r["rect"] for r in regions], np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def proposer(method, mode, peers):
    """image -> (N, 4) boxes of one method in one mode."""
    if method == "pydetect":
        return lambda img: ops.selective_search(img, mode)
    if method == "pydetect_cvk":
        return lambda img: ops.selective_search(img, mode, **OPENCV_PARAMS[mode])
    if method == "opencv":
        return lambda img: opencv_proposals(peers["cv2"], img, mode)
    return lambda img: selectivesearch_proposals(peers["selectivesearch"], img)


def timing_images(size=500):
    import cv2
    from skimage import data

    images = {}
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(data, name)()
        f = size / max(img.shape[:2])
        images[name] = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)),
                                  interpolation=cv2.INTER_AREA)
    return images


def run_timing(peers, threads, repeats, modes):
    """Time table rows, and the rows of pydetect single vs the selectivesearch package."""
    images = timing_images()
    methods = ["pydetect", "pydetect_cvk"] + (["opencv"] if "cv2" in peers else [])
    rows, pkg_rows = [], []
    for n in threads:
        pydetect.set_num_threads(n)
        if "cv2" in peers:
            peers["cv2"].setNumThreads(n)
        for mode in modes:
            per_image = []
            for name, img in images.items():
                fns = {m: functools.partial(proposer(m, mode, peers), img) for m in methods}
                boxes = {m: len(fn()) for m, fn in fns.items()}
                t = time_alternating(fns, repeats if mode != "quality" else max(3, repeats // 2))
                per_image.append((t, boxes))
                print(f"threads={n} {mode:8s} {name:10s} " + "  ".join(
                    f"{LABELS[m]} {t[m] * 1e3:8.1f} ms ({boxes[m]} boxes)" for m in methods), flush=True)
            mean = {m: statistics.mean(t[m] for t, _ in per_image) * 1e3 for m in methods}
            nbox = {m: statistics.mean(b[m] for _, b in per_image) for m in methods}
            row = f"| {n} | {mode} | " + " | ".join(f"{mean[m]:.0f} ({nbox[m]:.0f})" for m in methods)
            if "opencv" in methods:
                row += " | " + " | ".join(
                    f"{statistics.mean(t[m] / t['opencv'] for t, _ in per_image):.2f}x" for m in methods[:2])
            rows.append(row + " |")
    pkg = peers.get("selectivesearch")
    if pkg is not None:
        for n in threads:
            pydetect.set_num_threads(n)
            for label, kw in (("defaults (scale=1, sigma=0.8, min_size=50)", {}),
                              ("README (scale=500, sigma=0.9, min_size=10)", {"scale": 500, "sigma": 0.9, "min_size": 10})):
                ratios = []
                for name, img in images.items():
                    r = time_alternating({"pydetect": lambda img=img: ops.selective_search(img, "single"),
                                          "pkg": lambda img=img, kw=kw: selectivesearch_proposals(pkg, img, **kw)},
                                         max(3, repeats // 2))
                    ratios.append(r["pkg"] / r["pydetect"])
                    print(f"threads={n} single vs selectivesearch {label} {name}: pydetect {r['pydetect']*1e3:.1f} ms, "
                          f"package {r['pkg']*1e3:.1f} ms, speed-up {ratios[-1]:.1f}x", flush=True)
                pkg_rows.append(f"| {n} | {label} | {statistics.mean(ratios):.1f}x |")
    return rows, pkg_rows


def _save_atomic(path, arrays):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def proposals_for(method, mode, dataset, key, cache, peers):
    """List of (N_i, 4) proposals per image, computed once and cached (resumable)."""
    from tqdm import tqdm

    path = os.path.join(cache, f"{key}__{method}-{mode}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return [z[f"p{i}"] for i in range(len(dataset))]
    fn = proposer(method, mode, peers)
    out = [fn(img) for img, _ in tqdm(dataset, desc=f"{key} {method}-{mode}", leave=False)]
    _save_atomic(path, {f"p{i}": p for i, p in enumerate(out)})
    return out


def _scores(props, ds, **kw):
    from pydetect.eval import proposal_recall

    r = proposal_recall(props, ds, iou_thresholds=[0.5, 0.7], **kw)
    return r["n_proposals"], r["recall"][0], r["recall"][1], r["MABO"]


def run_recall(peers, split, n_images, cache, modes):
    """Rows of the like-for-like (same box count per image) table and of the capped table."""
    from pydetect import data

    os.makedirs(cache, exist_ok=True)
    datasets = {"digits_in_clutter": data.digits_in_clutter(split, n_images=n_images),
                "faces_in_clutter": data.faces_in_clutter(split, n_images=n_images)}
    methods = ["pydetect", "pydetect_cvk"] + (["opencv"] if "cv2" in peers else [])
    matched, capped = [], []
    for name, ds in datasets.items():
        key = f"{name}_{split}_{len(ds)}"
        for mode in modes:
            props = {m: proposals_for(m, mode, ds, key, cache, peers) for m in methods}
            for m in methods:
                n_all = np.mean([len(p) for p in props[m]])
                for budget in BUDGETS:
                    n, r5, r7, mabo = _scores(props[m], ds, max_proposals=budget)
                    capped.append(f"| {name} | {mode} | {LABELS[m]} | {budget} | {n:.0f} (of {n_all:.0f}) | "
                                  f"{r5:.3f} | {r7:.3f} | {mabo:.3f} |")
                    print(capped[-1], flush=True)
            if "opencv" not in props:
                continue
            # Both lists of each image cut, best-ranked first, to the smaller of the two counts.
            for m in ("pydetect", "pydetect_cvk"):
                cut = [min(len(p), len(q)) for p, q in zip(props[m], props["opencv"])]
                ours = _scores([p[:c] for p, c in zip(props[m], cut)], ds)
                theirs = _scores([q[:c] for q, c in zip(props["opencv"], cut)], ds)
                matched.append(f"| {name} | {mode} | {LABELS[m]} | {ours[0]:.0f} | "
                               + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(ours[1:], theirs[1:])) + " |")
                print(matched[-1], flush=True)
    return matched, capped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50, help="images per dataset for the quality tables")
    ap.add_argument("--split", default="val", choices=["val", "test"], help="dataset split for the quality tables")
    ap.add_argument("--repeats", type=int, default=7, help="timing rounds (quality mode: half, at least 3)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "out", "proposals_cache"))
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-recall", action="store_true")
    args = ap.parse_args()
    peers = load_peers()
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; "
          f"load average {load_average()}", flush=True)
    time_rows, pkg_rows, matched, capped = [], [], [], []
    if not args.skip_timing:
        time_rows, pkg_rows = run_timing(peers, args.threads, args.repeats, args.modes)
        print(f"load average after timing: {load_average()}", flush=True)
    if not args.skip_recall:
        matched, capped = run_recall(peers, args.split, args.images, args.cache, args.modes)
    print(f"load average at the end: {load_average()}")
    if time_rows:
        print("\n| threads | mode | pydetect (paper k) ms (boxes) | pydetect (OpenCV k) ms (boxes) | OpenCV ms (boxes) "
              "| ratio paper k / OpenCV | ratio OpenCV k / OpenCV |\n|---|---|---|---|---|---|---|")
        print("\n".join(time_rows))
    if pkg_rows:
        print("\n| threads | selectivesearch settings | single-mode speed-up |\n|---|---|---|")
        print("\n".join(pkg_rows))
    if matched:
        print("\n| dataset | mode | pydetect run with | boxes per image (both) | recall@0.5 pydetect / OpenCV "
              "| recall@0.7 pydetect / OpenCV | MABO pydetect / OpenCV |\n|---|---|---|---|---|---|---|")
        print("\n".join(matched))
    if capped:
        print("\n| dataset | mode | method | cap | boxes used (of mean) | recall@0.5 | recall@0.7 | MABO |"
              "\n|---|---|---|---|---|---|---|---|")
        print("\n".join(capped))


if __name__ == "__main__":
    main()
