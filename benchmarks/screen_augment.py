"""Screens the CNN detectors' training augmentation on the ``val`` split (never on test).

Fixed pretraining epochs and detection iterations (not time budgets), so that the machine's
load does not decide the outcome; each run prints and appends one JSON line to --out.

    PYTHONPATH=. python benchmarks/screen_augment.py --name none --augment none
    PYTHONPATH=. python benchmarks/screen_augment.py --name default
    PYTHONPATH=. python benchmarks/screen_augment.py --name invert --augment '{"invert": 0.5}'
"""

from __future__ import annotations

import argparse
import ast
import json
import time

import torch

from pydetect import data
from pydetect.detectors import FasterRCNN, Pretraining
from pydetect.eval import coco_evaluate

try:  # run as a script from the repository root
    from generalisation import shifted_digits
except ImportError:
    from benchmarks.generalisation import shifted_digits


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--augment", default="default", help="'default', 'none' or a dict literal")
    p.add_argument("--scale-jitter", default=None, help="a (lo, hi) literal")
    p.add_argument("--dataset", default="digits", choices=("digits", "faces"))
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/out/screen_augment.jsonl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    augment = None if args.augment == "none" else (
        "default" if args.augment == "default" else ast.literal_eval(args.augment))
    jitter = None if args.scale_jitter is None else ast.literal_eval(args.scale_jitter)
    make = data.digits_in_clutter if args.dataset == "digits" else data.faces_in_clutter
    train, val = make("train", n_images=args.n_train), make("val", n_images=args.n_val)
    det = FasterRCNN(pretrain=Pretraining(seconds=1e9, epochs=args.pretrain_epochs), train_seconds=1e9,
                     max_iter=args.iters, augment=augment, scale_jitter=jitter, progress=False, seed=0)
    t0 = time.perf_counter()
    det.fit(train)
    train_s = time.perf_counter() - t0
    stats = coco_evaluate(val, det.predict_batch([im for im, _ in val]))
    shifted = {}
    if args.dataset == "digits":  # the val digits rendered another way (generalisation.py)
        for rendering in ("ink", "resampling"):
            ds = shifted_digits(rendering, args.n_val, split="val")
            s = coco_evaluate(ds, det.predict_batch([im for im, _ in ds]))
            shifted[f"val_{rendering}"] = {"AP": round(s["AP"], 4), "AP50": round(s["AP50"], 4)}
    row = {"name": args.name, "dataset": args.dataset, "augment": args.augment, "scale_jitter": jitter,
           "pretrain_epochs": args.pretrain_epochs, "iters": args.iters, "n_train": args.n_train,
           "n_val": args.n_val, "crop_accuracy": det.pretrain_accuracy_, "train_seconds": round(train_s, 1),
           "AP": round(stats["AP"], 4), "AP50": round(stats["AP50"], 4), "AP75": round(stats["AP75"], 4),
           **shifted,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
