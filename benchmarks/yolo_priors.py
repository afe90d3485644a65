"""YOLOv1's free box predictors vs anchor priors (k-means), at 1x and 3x a training budget.

The users' question (issue 20): given enough training, are YOLOv1's B free predictors per
cell as good as anchor priors? Both forms of :class:`pydetect.detectors.YOLO` train on the
digits ``train`` split with the same backbone, crop pretraining, augmentation and budget, and
are scored on the ``val`` split: COCO AP, AP50, AP75 and the recall of small objects (ARs,
area < 32^2 pixels, up to 100 detections).

Each run trains from scratch. The budget is either wall-clock (``--pretrain`` seconds of
crop pretraining, then ``--train`` times ``--mult`` seconds of detection training; the
iterations reached are reported, and the two forms of a budget should share the machine's
load: ``--pair`` runs them side by side at one thread each) or counted (``--iterations N``
and ``--pretrain-epochs E``: ``--mult`` times N detection iterations after E epochs of crop
pretraining, whatever the load, so that runs can share a busy machine and still be compared).
The full budget's counts are what the default ``YOLO()`` reaches in the 90 s + 780 s of
``pydetect bench detectors`` on an unloaded 2-core machine: about 9 pretraining epochs and
3,788 iterations (digits val run 8).

Usage:
    python benchmarks/yolo_priors.py --pair --mult 1 --train 300 --out runs.jsonl
    python benchmarks/yolo_priors.py --pair --mult 3 --iterations 3788 --pretrain-epochs 9 --out runs.jsonl
    python benchmarks/yolo_priors.py --table runs.jsonl [--record]
"""

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from pydetect.bench.results import record_section
from pydetect.bench.timing import machine

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "YOLOv1 predictors vs anchor priors (issue 20)"


def run(form, mult, train_seconds, pretrain_seconds, threads, iterations=None, pretrain_epochs=None):
    import os

    from pydetect import data
    from pydetect import eval as pdeval
    from pydetect.detectors import YOLO, Pretraining

    train, val = data.digits_in_clutter("train"), data.digits_in_clutter("val")
    if iterations:  # a counted budget: the clocks are set far beyond what the counts take
        budget = dict(max_iter=iterations * mult, train_seconds=1e7,
                      pretrain=Pretraining(seconds=1e7, epochs=pretrain_epochs))
    else:
        budget = dict(train_seconds=train_seconds * mult, pretrain=Pretraining(seconds=pretrain_seconds))
    det = YOLO(anchors=None if form == "v1" else "kmeans", progress=False, num_threads=threads, **budget)
    t0 = time.perf_counter()
    det.fit(train)
    fit = time.perf_counter() - t0
    dets = det.predict_batch([im for im, _ in val])
    stats = pdeval.coco_evaluate(val, dets)
    return {"form": form, "budget": f"{mult}x", "train_seconds": None if iterations else train_seconds * mult,
            "pretrain_seconds": None if iterations else pretrain_seconds, "pretrain_epochs": pretrain_epochs,
            "max_iter": iterations * mult if iterations else None, "threads": threads, "iterations": det.history_["iterations"],
            "fit_seconds": fit, "load_average": os.getloadavg()[0],
            **{k: stats[k] for k in ("AP", "AP50", "AP75", "ARs", "AR100")}}


def _budget(r):
    """(pretraining, detection training) of a row, counted or in seconds."""
    if r.get("max_iter"):
        return f"{r['pretrain_epochs']} epochs", f"{r['max_iter']:,} iterations"
    return f"{r['pretrain_seconds']:.0f} s", f"{r['train_seconds']:.0f} s"


def table(rows):
    head = ("| budget | form | pretraining | training | iterations run | AP | AP50 | AP75 | ARs (small) | AR100 | "
            "fit minutes |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    name = {"v1": "YOLOv1 (B = 2 free predictors, stride 16)", "anchors": "anchor priors (k-means, 9, strides 8/16/32)"}
    rows = sorted(rows, key=lambda r: (r["budget"], r["form"] != "v1"))
    return head + "".join(f"| {r['budget']} | {name[r['form']]} | {' | '.join(_budget(r))} | {r['iterations']:,} | "
                          f"{r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['ARs']:.3f} | {r['AR100']:.3f} | "
                          f"{r['fit_seconds'] / 60:.1f} |\n"
                          for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--form", choices=("v1", "anchors"))
    ap.add_argument("--pair", action="store_true", help="run both forms side by side, one thread each")
    ap.add_argument("--mult", type=int, default=1)
    ap.add_argument("--train", type=float, default=780.0, help="1x detection-training seconds")
    ap.add_argument("--pretrain", type=float, default=90.0)
    ap.add_argument("--iterations", type=int, help="1x detection-training iterations (a counted budget)")
    ap.add_argument("--pretrain-epochs", type=int, default=9, help="crop-pretraining epochs of a counted budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="append each run as a JSON line here")
    ap.add_argument("--table", help="print (and with --record, write) the table of a JSON-lines file")
    ap.add_argument("--note", default="", help="a sentence on the conditions, for the table")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        text = (f"{datetime.date.today().isoformat()}; {machine()}; digits train (500 images) -> "
                f"val (200 images); each row one fresh run of `YOLO(anchors=None)` or `YOLO()` with the "
                f"stated crop pretraining then detection training, at {rows[0]['threads']} thread each. "
                f"{args.note}\n\n" + table(rows))
        print(f"## {SECTION}\n\n{text}")
        if args.record:
            record_section(RESULTS, SECTION, text)
        return
    if args.pair:
        base = [sys.executable, __file__, "--mult", str(args.mult), "--train", str(args.train),
                "--pretrain", str(args.pretrain), "--threads", str(args.threads),
                "--pretrain-epochs", str(args.pretrain_epochs)] + \
               (["--out", args.out] if args.out else []) + \
               (["--iterations", str(args.iterations)] if args.iterations else [])
        procs = [subprocess.Popen(base + ["--form", form]) for form in ("v1", "anchors")]
        sys.exit(max(p.wait() for p in procs))
    r = run(args.form, args.mult, args.train, args.pretrain, args.threads, args.iterations, args.pretrain_epochs)
    print(json.dumps(r), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
