"""Anchor shapes from k-means on the training boxes vs FasterRCNN's hand-picked anchors (issue 20).

YOLOv2's Table 1 (Redmon & Farhadi, CVPR 2017, "Dimension Clusters"): the mean over the
boxes of the IoU of each box with its best anchor, both shapes centred at the same point
(:func:`pydetect.models.shape_iou`). For each built-in dataset:

- k-means (:func:`pydetect.models.kmeans_anchors`, seed 0) for k = 1..9, and for k = 12,
  the number of anchors FasterRCNN uses by default; the spread over seeds 0-4 on train is
  shown next to it (k-means stops in a local optimum that depends on the seeding);
- torchvision's default anchors, sizes (32, 64, 128) x ratios h / w (0.5, 1, 2), with
  pydetect's convention (:class:`pydetect.models.AnchorGenerator`: width ``s / sqrt(r)``,
  height ``s * sqrt(r)``);
- FasterRCNN's own default, the quantile fit ``fit_anchors(train targets, n_sizes=4)``
  (sizes x ratios).

Every anchor set is fitted on the train split; "val" is the mean IoU of the val split's
boxes (unseen objects) to those same anchors. The table goes to stdout and replaces the
section "## k-means anchors (issue 20)" of benchmarks/RESULTS.md.

    PYTHONPATH=. python benchmarks/kmeans_anchors.py [--no-record]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import numpy as np

from pydetect import data, models
from pydetect.bench.results import record_section
from pydetect.models.anchors import fit_anchors

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "k-means anchors (issue 20)"
DATASETS = {"digits_in_clutter": data.digits_in_clutter, "faces_in_clutter": data.faces_in_clutter}
KS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)
SEEDS = range(5)


def boxes_wh(dataset) -> np.ndarray:
    b = np.concatenate([np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in dataset.targets])
    return b[:, 2:] - b[:, :2]


def generator_shapes(sizes, ratios) -> np.ndarray:
    """The (w, h) of the anchors an AnchorGenerator makes of sizes x ratios (its own convention)."""
    cell = models.AnchorGenerator((tuple(sizes),), (tuple(ratios),)).cell_anchors(0).double().numpy()
    return cell[:, 2:] - cell[:, :2]


def mean_best_iou(wh, anchors) -> float:
    return float(models.shape_iou(wh, anchors).max(1).mean())


def dataset_table(name, loader):
    train, val = loader("train"), loader("val")
    wh_train, wh_val = boxes_wh(train), boxes_wh(val)
    rows = []
    t0 = time.perf_counter()
    for k in KS:
        anchors, iou_train = models.kmeans_anchors(wh_train, k, seed=0)
        spread = [models.kmeans_anchors(wh_train, k, seed=s)[1] for s in SEEDS]
        rows.append(("k-means (seed 0)", k, iou_train, mean_best_iou(wh_val, anchors),
                     f"{min(spread):.3f}–{max(spread):.3f}", anchors))
    seconds = time.perf_counter() - t0
    tv = generator_shapes((32.0, 64.0, 128.0), (0.5, 1.0, 2.0))
    rows.append(("torchvision default: sizes (32, 64, 128) x ratios (0.5, 1, 2)", len(tv),
                 mean_best_iou(wh_train, tv), mean_best_iou(wh_val, tv), "–", tv))
    sizes, ratios = fit_anchors(train.targets, n_sizes=4)
    fr = generator_shapes(sizes, ratios)
    rows.append((f"FasterRCNN default fit_anchors: sizes {sizes} x ratios {ratios}", len(fr),
                 mean_best_iou(wh_train, fr), mean_best_iou(wh_val, fr), "–", fr))
    lines = [f"**{name}**: {len(wh_train)} train boxes ({len(np.unique(wh_train, axis=0))} distinct shapes) "
             f"in {len(train)} images, {len(wh_val)} val boxes in {len(val)} images; "
             f"median train box {np.median(wh_train[:, 0]):.1f} x {np.median(wh_train[:, 1]):.1f} px (w x h); "
             f"all k-means fits ({len(KS)} k x {len(SEEDS)} seeds) took {seconds:.1f} s.",
             "",
             "| box generation | # anchors | mean IoU train | mean IoU val | train, seeds 0–4 |",
             "|---|---|---|---|---|"]
    for label, k, a, b, spread, _ in rows:
        lines.append(f"| {label} | {k} | {a:.3f} | {b:.3f} | {spread} |")
    km = [(r[1], r[2]) for r in rows if r[0].startswith("k-means")]
    for label, hand in (("torchvision's default", rows[-2]), ("FasterRCNN's fitted default", rows[-1])):
        k_eq = next((k for k, iou in km if iou >= hand[2]), None)
        lines += ["", f"k-means (seed 0) reaches the train mean IoU of {label} ({hand[1]} anchors, "
                  f"{hand[2]:.3f}) with " + (f"k = {k_eq}." if k_eq else f"no k up to {KS[-1]}.")]
    k9 = next(r for r in rows if r[0].startswith("k-means") and r[1] == 9)[5]
    k12 = next(r for r in rows if r[0].startswith("k-means") and r[1] == 12)[5]
    lines += ["", "k-means shapes (w x h px, by area), k = 9: "
              + ", ".join(f"{w:.1f}x{h:.1f}" for w, h in k9),
              "", "k = 12: " + ", ".join(f"{w:.1f}x{h:.1f}" for w, h in k12)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    intro = (f"`benchmarks/kmeans_anchors.py` ({date}; {os.cpu_count()} cores). Mean over the "
             "boxes of the IoU with the best anchor, box and anchor centred at the same point (YOLOv2's "
             "Table 1: shape only; the position of the anchor grid is ignored). Anchors fitted on the train "
             "split; val: the same anchors on the val split's boxes.\n")
    parts = [intro]
    for name, loader in DATASETS.items():
        parts.append(dataset_table(name, loader))
    body = "\n".join(parts)
    print(f"## {SECTION}\n\n{body}")
    if not args.no_record:
        record_section(RESULTS, SECTION, body)


if __name__ == "__main__":
    main()
