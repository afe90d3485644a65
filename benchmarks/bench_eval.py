"""coco_evaluate vs pycocotools (evaluate + accumulate + summarize) on a synthetic 5,000-image problem.

Every library gets the same in-memory COCO ground truth and results, and every time includes
loading them (the peers' ``COCO`` index and ``loadRes``, pydetect's parsing of the same dicts):
what a user waits for between having the dicts and having the 12 stats. The deep copies the
peers need (they change the dicts they are given) are made before the clock starts.
faster-coco-eval is timed too when it is installed. Median of N runs after a warm-up.

    PYTHONPATH=. python benchmarks/bench_eval.py [--images 5000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import time

import numpy as np

from pydetect.bench.ops import coco_problem as make_problem


def time_pycocotools(gt, results, cls_eval):
    from pycocotools.coco import COCO

    gt, results = copy.deepcopy(gt), copy.deepcopy(results)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = cls_eval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t = time.perf_counter() - t0
    return t, np.array(ev.stats)


def time_faster_coco_eval(gt, results):
    from faster_coco_eval import COCO, COCOeval_faster

    gt, results = copy.deepcopy(gt), copy.deepcopy(results)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t = time.perf_counter() - t0
    return t, np.array(ev.stats)


def time_pydetect(gt, results):
    from pydetect import eval as pdeval

    t0 = time.perf_counter()
    out = pdeval.coco_evaluate(gt, results)
    return time.perf_counter() - t0, out["stats"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--cats", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from pycocotools.cocoeval import COCOeval

    gt, results = make_problem(args.images, args.cats)
    print(f"{args.images} images, {len(gt['annotations'])} gt boxes, {len(results)} detections, "
          f"{args.cats} categories, cpu_count={os.cpu_count()}")
    peers = {"pycocotools": lambda: time_pycocotools(gt, results, COCOeval)}
    try:
        import faster_coco_eval  # noqa: F401

        peers["faster-coco-eval"] = lambda: time_faster_coco_eval(gt, results)
    except ImportError:
        print("faster-coco-eval not installed: skipped")
    times = {name: [] for name in [*peers, "pydetect"]}
    stats = {}
    for rep in range(args.repeats + 1):  # first round is the warm-up, interleaved runs
        for name, fn in [*peers.items(), ("pydetect", lambda: time_pydetect(gt, results))]:
            t, s = fn()
            stats[name] = s
            if rep:
                times[name].append(t)
        print(f"round {rep}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items() if v), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in peers:
        diff = np.abs(stats[name] - stats["pydetect"]).max()
        print(f"{name}: median {med[name]:.3f}s; pydetect {med['pydetect']:.3f}s; "
              f"ratio {med[name] / med['pydetect']:.1f}x; max |stats diff| {diff:.2e}")


if __name__ == "__main__":
    main()
