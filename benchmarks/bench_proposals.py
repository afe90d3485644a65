"""Selective search: pydetect vs OpenCV contrib (cv2.ximgproc) and the `selectivesearch` package.

Two parts:

1. Time per image on natural photos shrunk to 500 px (longer side): pydetect's single/fast/
   quality modes against OpenCV's single strategy / switchToSelectiveSearchFast /
   switchToSelectiveSearchQuality at the same thread count, and pydetect's single mode
   against the `selectivesearch` package (pure Python, one strategy; timed at its defaults
   and at its README's scale=500, sigma=0.9, min_size=10). Calls are interleaved in one
   process; warm-up, then the median of --repeats runs.
2. Proposal quality on the digits_in_clutter and faces_in_clutter test splits: recall at
   IoU 0.5 and 0.7 and MABO (Uijlings et al.) with every method's list capped at 500, 1000
   and 2000 boxes (pydetect.eval.proposal_recall). The proposals of each method are cached
   in --cache, so an interrupted run resumes.

Needs opencv-contrib-python-headless and selectivesearch, which conflict with the shared
venv's opencv-python-headless: run from a venv that has them, with pydetect on PYTHONPATH:

    PYTHONPATH=. /work/venv-ss/bin/python benchmarks/bench_proposals.py [--images 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np

from _harness import median_time
import pydetect
from pydetect import ops

BUDGETS = (500, 1000, 2000)
MODES = ("single", "fast", "quality")


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



def interleaved(fns, repeats):
    """Median times of several callables, run alternately after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def run_timing(peers, threads, repeats, lines):
    images = timing_images()
    cv2 = peers.get("cv2")
    for n in threads:
        pydetect.set_num_threads(n)
        if cv2 is not None:
            cv2.setNumThreads(n)
        for mode in MODES:
            rows = []
            for name, img in images.items():
                fns = {"pydetect": lambda img=img: ops.selective_search(img, mode)}
                if cv2 is not None:
                    fns["opencv"] = lambda img=img: opencv_proposals(cv2, img, mode)
                r = interleaved(fns, repeats if mode != "quality" else max(3, repeats // 2))
                rows.append(r)
                msg = f"threads={n} {mode:8s} {name:10s} {img.shape[1]}x{img.shape[0]}  pydetect {r['pydetect']*1e3:8.1f} ms"
                if "opencv" in r:
                    msg += f"  opencv {r['opencv']*1e3:8.1f} ms  ratio {r['pydetect'] / r['opencv']:.2f}"
                print(msg, flush=True)
            pd_ms = statistics.mean(r["pydetect"] for r in rows) * 1e3
            line = f"| {n} | {mode} | {pd_ms:.0f} |"
            if cv2 is not None:
                cv_ms = statistics.mean(r["opencv"] for r in rows) * 1e3
                ratio = statistics.mean(r["pydetect"] / r["opencv"] for r in rows)
                line += f" {cv_ms:.0f} | {ratio:.2f}x |"
            else:
                line += " - | - |"
            lines.append(line)
    pkg = peers.get("selectivesearch")
    pkg_lines = []
    if pkg is not None:
        for n in threads:
            pydetect.set_num_threads(n)
            for label, kw in (("defaults (scale=1, sigma=0.8, min_size=50)", {}),
                              ("README (scale=500, sigma=0.9, min_size=10)", dict(scale=500, sigma=0.9, min_size=10))):
                ratios = []
                for name, img in images.items():
                    r = interleaved({"pydetect": lambda img=img: ops.selective_search(img, "single"),
                                     "pkg": lambda img=img: selectivesearch_proposals(pkg, img, **kw)},
                                    max(3, repeats // 2))
                    ratios.append(r["pkg"] / r["pydetect"])
                    print(f"threads={n} single vs selectivesearch {label} {name}: pydetect {r['pydetect']*1e3:.1f} ms, "
                          f"package {r['pkg']*1e3:.1f} ms, speed-up {ratios[-1]:.1f}x", flush=True)
                pkg_lines.append(f"| {n} | {label} | {statistics.mean(ratios):.1f}x |")
    return pkg_lines


def _cache_path(cache, dataset, method):
    return os.path.join(cache, f"{dataset}__{method}.npz")


def _save_atomic(path, arrays):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def proposals_for(method, dataset, name, cache, peers):
    """List of (N_i, 4) proposals per image, computed once and cached (resumable)."""
    from tqdm import tqdm

    path = _cache_path(cache, name, method)
    if os.path.exists(path):
        with np.load(path) as z:
            return [z[f"p{i}"] for i in range(len(dataset))]
    lib, mode = method.split("-")
    out = []
    for img, _ in tqdm(dataset, desc=f"{name} {method}", leave=False):
        if lib == "pydetect":
            out.append(ops.selective_search(img, mode))
        elif lib == "opencv":
            out.append(opencv_proposals(peers["cv2"], img, mode))
        else:
            out.append(selectivesearch_proposals(peers["selectivesearch"], img))
    _save_atomic(path, {f"p{i}": p for i, p in enumerate(out)})
    return out


def run_recall(peers, n_images, cache, modes, lines):
    from pydetect import data
    from pydetect.eval import proposal_recall

    os.makedirs(cache, exist_ok=True)
    datasets = {"digits_in_clutter": data.digits_in_clutter("test", n_images=n_images),
                "faces_in_clutter": data.faces_in_clutter("test", n_images=n_images)}
    methods = [f"pydetect-{m}" for m in modes]
    if "cv2" in peers:
        methods += [f"opencv-{m}" for m in modes]
    for name, ds in datasets.items():
        cached = {}
        for method in methods:
            props = cached[method] = proposals_for(method, ds, name, cache, peers)
            n_mean = np.mean([len(p) for p in props])
            for budget in BUDGETS:
                r = proposal_recall(props, ds, iou_thresholds=[0.5, 0.7], max_proposals=budget)
                line = (f"| {name} | {method} | {budget} | {r['n_proposals']:.0f} (of {n_mean:.0f}) | "
                        f"{r['recall'][0]:.3f} | {r['recall'][1]:.3f} | {r['MABO']:.3f} |")
                print(line, flush=True)
                lines.append(line)
        # OpenCV often returns fewer boxes than the budget: also compare pydetect cut, per
        # image, to exactly as many boxes as OpenCV returned.
        for mode in modes:
            if f"opencv-{mode}" not in cached:
                continue
            ours = [p[:len(q)] for p, q in zip(cached[f"pydetect-{mode}"], cached[f"opencv-{mode}"])]
            r = proposal_recall(ours, ds, iou_thresholds=[0.5, 0.7])
            line = (f"| {name} | pydetect-{mode}, cut to OpenCV's count per image | - | {r['n_proposals']:.0f} | "
                    f"{r['recall'][0]:.3f} | {r['recall'][1]:.3f} | {r['MABO']:.3f} |")
            print(line, flush=True)
            lines.append(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="test images per dataset for recall")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "out", "proposals_cache"))
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-recall", action="store_true")
    args = ap.parse_args()
    peers = load_peers()
    time_lines, pkg_lines, recall_lines = [], [], []
    if not args.skip_timing:
        pkg_lines = run_timing(peers, args.threads, args.repeats, time_lines)
    if not args.skip_recall:
        run_recall(peers, args.images, args.cache, args.modes, recall_lines)
    print("\n| threads | mode | pydetect ms | OpenCV ms | time ratio |\n|---|---|---|---|---|")
    print("\n".join(time_lines))
    print("\n| threads | selectivesearch settings | single-mode speed-up |\n|---|---|---|")
    print("\n".join(pkg_lines))
    print("\n| dataset | method | budget | boxes used (of mean) | recall@0.5 | recall@0.7 | MABO |\n|---|---|---|---|---|---|---|")
    print("\n".join(recall_lines))


if __name__ == "__main__":
    main()
