"""Box-op benchmark: pydetect vs torchvision.ops and OpenCV's dnn NMS.

    python benchmarks/bench_ops.py [--record] [--threads 1 2] [--quick]

Peers that are not installed are named and skipped. Inputs are clustered boxes (detector
output before NMS): a few hundred centres with jittered boxes around each.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np

from pydetect import ops
from pydetect.bench.ops import clustered_boxes as clustered
from pydetect.bench.results import Table
from pydetect.bench.timing import set_threads, time_alternating
from pydetect.ops.nms import nms_with_algorithm

RESULTS = Path(__file__).with_name("RESULTS.md")


def numpy_soft_nms(boxes, scores, sigma=0.5, score_threshold=0.001):
    """A straightforward vectorised numpy Gaussian soft-NMS (the usual Python baseline)."""
    boxes = boxes.astype(np.float64)
    s = scores.astype(np.float64).copy()
    idx = np.flatnonzero(s >= score_threshold)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while idx.size:
        best = idx[np.argmax(s[idx])]
        keep.append(best)
        idx = idx[idx != best]
        b = boxes[idx]
        w = np.clip(np.minimum(b[:, 2], boxes[best, 2]) - np.maximum(b[:, 0], boxes[best, 0]), 0, None)
        h = np.clip(np.minimum(b[:, 3], boxes[best, 3]) - np.maximum(b[:, 1], boxes[best, 1]), 0, None)
        inter = w * h
        iou = inter / (areas[idx] + areas[best] - inter)
        s[idx] *= np.exp(-(iou * iou) / sigma)
        idx = idx[s[idx] >= score_threshold]
    return np.array(keep)


def try_import(name):
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a broken install is reported like a missing one
        print(f"peer {name} not available: {exc.__class__.__name__}: {exc}")
        return None


def crossover(args):
    """Times both exact NMS algorithms on the same clustered boxes (one thread)."""
    set_threads(1)
    table = Table("NMS algorithm crossover (compaction vs grid, same result)")
    for n in (100, 200, 400, 600, 800, 1000, 2000, 10000, 50000):
        boxes, scores, _ = clustered(n, seed=n)
        assert np.array_equal(nms_with_algorithm(boxes, scores, 0.5, "compaction"),
                              nms_with_algorithm(boxes, scores, 0.5, "grid"))
        t = time_alternating({"grid": lambda: nms_with_algorithm(boxes, scores, 0.5, "grid"),
                              "compaction": lambda: nms_with_algorithm(boxes, scores, 0.5, "compaction")},
                             args.repeats, min_time=0.2)
        table.add(f"nms {n:,} boxes: grid vs compaction", 1, t["grid"], "compaction", t["compaction"])
    if args.record:
        table.record(RESULTS, "NMS algorithm crossover (bench_ops.py --crossover)", args.note)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--record", action="store_true", help="write the table to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="a remark recorded with the table (e.g. machine load)")
    parser.add_argument("--crossover", action="store_true",
                        help="time NMS by compaction vs by grid to choose the size where Auto switches")
    args = parser.parse_args()
    if args.crossover:
        return crossover(args)

    torch = try_import("torch")
    tv = try_import("torchvision.ops") if torch is not None else None
    cv2 = try_import("cv2")
    sizes = [1000, 10000] if args.quick else [1000, 10000, 50000]
    repeats = 5 if args.quick else args.repeats
    table = Table("Box ops")
    for threads in args.threads:
        set_threads(threads)
        for n in sizes:
            boxes, scores, _ = clustered(n)
            fns = {"pydetect": lambda: ops.nms(boxes, scores, 0.5)}
            if tv is not None:
                tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
                assert np.array_equal(tv.nms(tb, ts, 0.5).numpy(), ops.nms(boxes, scores, 0.5))
                fns["torchvision"] = lambda: tv.nms(tb, ts, 0.5)
            if cv2 is not None:
                xywh = ops.box_convert(boxes, "xyxy", "xywh").astype(np.float64)
                fns["cv2.dnn.NMSBoxes"] = lambda: cv2.dnn.NMSBoxes(xywh, scores, 0.0, 0.5)
            t = time_alternating(fns, repeats)
            for peer in [k for k in fns if k != "pydetect"] or [None]:
                table.add(f"nms {n:,} clustered boxes", threads, t["pydetect"], peer, t.get(peer))

            boxes, scores, labels = clustered(n, seed=1, num_classes=20)
            fns = {"pydetect": lambda: ops.batched_nms(boxes, scores, labels, 0.5)}
            if tv is not None:
                tb, ts, tl = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)
                fns["torchvision"] = lambda: tv.batched_nms(tb, ts, tl, 0.5)
            t = time_alternating(fns, repeats)
            for peer in [k for k in fns if k != "pydetect"] or [None]:
                table.add(f"batched_nms {n:,} boxes, 20 classes", threads, t["pydetect"], peer, t.get(peer))

        a, _, _ = clustered(2000, seed=2)
        b, _, _ = clustered(2000, seed=3)
        fns = {"pydetect": lambda: ops.box_iou(a, b)}
        if tv is not None:
            ta, tb2 = torch.from_numpy(a), torch.from_numpy(b)
            fns["torchvision"] = lambda: tv.box_iou(ta, tb2)
        t = time_alternating(fns, repeats)
        for peer in [k for k in fns if k != "pydetect"] or [None]:
            table.add("box_iou 2000×2000", threads, t["pydetect"], peer, t.get(peer))

        for n in (1000, 5000):
            boxes, scores, _ = clustered(n, seed=4)
            fns = {"pydetect": lambda: ops.soft_nms(boxes, scores, sigma=0.5, method="gaussian"),
                   "numpy soft-NMS": lambda: numpy_soft_nms(boxes, scores)}
            t = time_alternating(fns, max(3, repeats // 2))
            table.add(f"soft_nms gaussian {n:,} boxes", threads, t["pydetect"], "numpy soft-NMS", t["numpy soft-NMS"])

    if tv is None:
        print("torchvision is not installed: its columns are missing (it is a peer, not a dependency)")
    if args.record:
        table.record(RESULTS, "Box ops (bench_ops.py)",
                     (args.note + " " if args.note else "") + "nms/batched_nms: IoU 0.5 on clustered float32 boxes; torchvision "
                     f"{getattr(importlib.import_module('torchvision'), '__version__', '?') if tv else 'n/a'}"
                     f", OpenCV {cv2.__version__ if cv2 else 'n/a'}.")


if __name__ == "__main__":
    main()
