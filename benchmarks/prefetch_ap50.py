"""What overlapping data preparation with compute does to a time-budgeted Faster R-CNN (issue 23,
item 4): FasterRCNN at its default (wall-clock) budget, trained with ``engine.train_loop``'s
``prefetch=0`` (batches drawn on the training thread) and ``prefetch=2`` (the default), scored
on the ``val`` split.

Run one process per setting at the same time, one torch thread each, so that both see the same
machine (a shared 2-core machine's load moves from minute to minute):

    PYTHONPATH=. python benchmarks/prefetch_ap50.py --prefetch 0 --out a.json &
    PYTHONPATH=. python benchmarks/prefetch_ap50.py --prefetch 2 --out b.json

Each writes {"prefetch", "iterations", "seconds", "AP", "AP50"} to --out.
"""

from __future__ import annotations

import argparse
import functools
import json

from pydetect import data, engine
from pydetect.detectors import FasterRCNN
from pydetect.eval import coco_evaluate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefetch", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # FasterRCNN calls engine.train_loop by attribute: this sets the one setting it does not expose.
    engine.train_loop = functools.partial(engine.train_loop, prefetch=args.prefetch)
    train, val = data.digits_in_clutter("train"), data.digits_in_clutter("val")
    det = FasterRCNN(seed=args.seed, num_threads=1, progress=False).fit(train)
    stats = coco_evaluate(val, det.predict_batch([im for im, _ in val]))
    result = {"prefetch": args.prefetch, "iterations": det.history_["iterations"],
              "seconds": det.history_["seconds"], "AP": stats["AP"], "AP50": stats["AP50"]}
    print(json.dumps(result))
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
