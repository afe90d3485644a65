"""YOLOv1's free box predictors vs anchor priors (k-means), at 1x and 3x a training budget.

The users' question (issue 20): given enough training, are YOLOv1's B free predictors per
cell as good as anchor priors? Both forms of :class:`pydetect.detectors.YOLO` train on the
digits ``train`` split with the same backbone, crop pretraining, augmentation and budget, and
are scored on the ``val`` split: COCO AP, AP50, AP75 and the recall of small objects (ARs,
area < 32^2 pixels, up to 100 detections).

Each run trains from scratch with ``--pretrain`` seconds of crop pretraining and ``--train``
(1x) or three times ``--train`` (3x) seconds of detection training. Runs go one after
another on the whole machine; iterations reached are reported, since the budgets are
wall-clock.

Usage: python benchmarks/yolo_priors.py [--train 780] [--pretrain 90] [--threads 2] [--record]
"""

import argparse
import datetime
import json
import time

from _harness import RESULTS, machine
from pydetect import data
from pydetect import eval as pdeval
from pydetect._io import atomic_write
from pydetect.detectors import YOLO

SECTION = "## YOLOv1 predictors vs anchor priors (issue 20)"


def run(form, train_seconds, pretrain_seconds, threads, train, val):
    det = YOLO(anchors=None if form == "v1" else "kmeans", train_seconds=train_seconds,
               pretrain_seconds=pretrain_seconds, progress=False, num_threads=threads)
    t0 = time.perf_counter()
    det.fit(train)
    fit = time.perf_counter() - t0
    dets = det.predict_batch([im for im, _ in val])
    stats = pdeval.coco_evaluate(val, dets)
    return {"form": form, "train_seconds": train_seconds, "iterations": det.history_["iterations"],
            "fit_seconds": fit, **{k: stats[k] for k in ("AP", "AP50", "AP75", "ARs", "AR100")}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=float, default=780.0, help="1x detection-training seconds")
    ap.add_argument("--pretrain", type=float, default=90.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--out", default=None, help="append each run as a JSON line here")
    args = ap.parse_args()
    train, val = data.digits_in_clutter("train"), data.digits_in_clutter("val")
    rows = []
    for mult in (1, 3):
        for form in ("v1", "anchors"):
            r = run(form, args.train * mult, args.pretrain, args.threads, train, val)
            r["budget"] = f"{mult}x"
            rows.append(r)
            print(json.dumps(r), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    head = ("| budget | form | training s | iterations | AP | AP50 | AP75 | ARs (small) | AR100 |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['budget']} | {'YOLOv1 (B=2 free predictors)' if r['form'] == 'v1' else 'anchors (k-means, 9)'} "
                   f"| {r['train_seconds']:.0f} | {r['iterations']} | {r['AP']:.3f} | {r['AP50']:.3f} | "
                   f"{r['AP75']:.3f} | {r['ARs']:.3f} | {r['AR100']:.3f} |\n" for r in rows)
    text = (f"{SECTION}\n\n{datetime.date.today().isoformat()}; {machine()}; {args.threads} threads; "
            f"digits train (500 images) -> val (200 images); {args.pretrain:.0f} s crop pretraining, then "
            f"{args.train:.0f} s (1x) or {3 * args.train:.0f} s (3x) of detection training; one run each.\n\n"
            + head + body)
    print(text)
    if args.record:
        with open(RESULTS) as f:
            old = f.read()
        if SECTION in old:
            start = old.index(SECTION)
            nxt = old.find("\n## ", start + len(SECTION))
            old = old[:start] + old[nxt + 1:] if nxt >= 0 else old[:start]
        with atomic_write(RESULTS, "w") as f:
            f.write(old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
