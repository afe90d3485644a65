"""One Faster R-CNN training iteration: pydetect's network vs torchvision's ``FasterRCNN``
assembled from the same parts (issue 23, item 4).

Both get the same backbone module (pydetect's default VGG-style net, copied so that both start
from identical weights), the same anchors (4 sizes x 3 ratios, one level), the same RPN and RoI
sampling sizes and NMS limits as ``pydetect.detectors.FasterRCNN``'s defaults, the same
7 x 7 RoIAlign (sampling ratio 2), a two-layer 256-wide box head, and the same batch of 2
digits_in_clutter training images resized to 256 x 256 (so that torchvision's transform,
given min_size = max_size = 256, keeps them as they are; its normalisation is set to
pydetect's mean and std, its padding to multiples of 8 as pydetect pads for this backbone).
What differs is each library's own RPN / RoI-head code and pydetect's defaults that torchvision
lacks: the box head's pooled-feature branch, balanced object sampling and aligned RoIAlign.

An iteration is what pydetect's training loop does: forward (the loss dict), the summed loss's
backward, gradient clipping at norm 10 and an AdamW step. Median of --repeats iterations per
library after --warmup, the two libraries alternating iteration by iteration, at each thread
count. Needs torchvision (a peer, not a dependency).

    PYTHONPATH=. python benchmarks/bench_train_step.py [--threads 1 2] [--repeats 15] [--record]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import torch

from pydetect import data, engine
from pydetect.bench.results import Table
from pydetect.bench.timing import set_threads, time_alternating
from pydetect.detectors import FasterRCNN
from pydetect.engine import image_to_tensor
from pydetect.models.backbones import IMAGE_MEAN, IMAGE_STD, build_backbone

RESULTS = Path(__file__).with_name("RESULTS.md")
SIZE = 256
SIZES, RATIOS = (16, 32, 64, 128), (0.5, 1.0, 2.0)


def batch(n_images=2, seed=0):
    """``n_images`` training images resized to SIZE x SIZE (float 0-1 tensors) and their targets."""
    ds = data.digits_in_clutter("train", n_images=n_images, seed=seed)
    images, targets = [], []
    for i in range(n_images):
        image, target = ds[i]
        h, w = image.shape[:2]
        images.append(image_to_tensor(cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)))
        boxes = np.asarray(target["boxes"], np.float32).reshape(-1, 4) * np.float32([SIZE / w, SIZE / h] * 2)
        targets.append({"boxes": torch.from_numpy(boxes),
                        "labels": torch.from_numpy(np.asarray(target["labels"], np.int64) + 1)})
    return images, targets


def pydetect_model(backbone, num_classes):
    det = FasterRCNN(anchor_sizes=SIZES, aspect_ratios=RATIOS)
    det._prepare(None)  # the anchors are given: nothing is fitted
    return det, det._build(backbone, num_classes)  # the network FasterRCNN.fit trains


def torchvision_model(backbone, num_classes, det):
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    c = backbone.out_channels
    model = TVFasterRCNN(
        backbone, None, min_size=SIZE, max_size=SIZE, image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD), rpn_anchor_generator=AnchorGenerator((SIZES,), (RATIOS,)),
        rpn_pre_nms_top_n_train=det.rpn_pre_nms_top_n[0], rpn_post_nms_top_n_train=det.rpn_post_nms_top_n[0],
        rpn_batch_size_per_image=det.rpn_batch_size_per_image,
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=TwoMLPHead(c * 49, det.representation_size),
        box_predictor=FastRCNNPredictor(det.representation_size, num_classes + 1),
        box_batch_size_per_image=det.roi_batch_size_per_image, box_score_thresh=det.box_score_thresh,
        box_nms_thresh=det.box_nms_thresh, box_detections_per_img=det.detections_per_img)
    model.transform.size_divisible = 8
    return model


def training_step(model, images, targets, tv_targets=False):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
    model.train()

    def step():
        # torchvision's targets hold labels 1..K already; pydetect's labels index the classes.
        tg = targets if tv_targets else [dict(t, labels=t["labels"] - 1) for t in targets]
        losses = model(images, tg)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    return step


def loop_rate(model, prefetch, iterations, seed=0):
    """Iterations per second of ``engine.train_loop`` on FasterRCNN's own kind of batches (2 of
    50 training images at their sizes, the default augmentation) with ``prefetch`` batches
    drawn ahead (0: drawn on the training thread, as before prefetching)."""
    ds = data.digits_in_clutter("train", n_images=50, seed=seed)
    images = [ds[i][0] for i in range(len(ds))]
    targets = [{"boxes": np.asarray(t["boxes"], np.float32).reshape(-1, 4),
                "labels": np.asarray(t["labels"], np.int64).reshape(-1)} for _, t in ds]
    augment = engine.build_augmentation("default", hflip=False, scale_jitter=None)

    def sample_batch(it, rank, world, rng):
        ims, ts = [], []
        for i in rng.choice(len(images), size=2, replace=False):
            im, t = augment(images[i], targets[i], rng)
            ims.append(image_to_tensor(im))
            ts.append({"boxes": torch.from_numpy(t["boxes"]), "labels": torch.from_numpy(t["labels"])})
        return ims, ts

    history = engine.train_loop(model, sample_batch, max_iter=iterations, seconds=1e9, lr=1e-4, seed=seed,
                                prefetch=prefetch)
    return history["iterations"] / history["seconds"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--loop", type=int, default=0, metavar="N",
                    help="also time N-iteration training loops without and with prefetching (alternating, 3 each)")
    ap.add_argument("--record", action="store_true", help=f"write the table into {RESULTS.name}")
    args = ap.parse_args()
    import torchvision

    torch.manual_seed(0)
    images, targets = batch()
    num_classes = 10
    backbone = build_backbone("vgg", False)
    det, ours = pydetect_model(copy.deepcopy(backbone), num_classes)
    peer = torchvision_model(copy.deepcopy(backbone), num_classes, det)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_peer = sum(p.numel() for p in peer.parameters())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {os.cpu_count()} cores, "
          f"load {' '.join(load)}, commit {commit}; parameters: pydetect {n_ours:,}, torchvision {n_peer:,}")
    table = Table("One Faster R-CNN training iteration: pydetect vs torchvision, same parts")
    for threads in args.threads:
        set_threads(threads)
        times = time_alternating({"pydetect": training_step(ours, images, targets),
                                  "torchvision": training_step(peer, images, targets, tv_targets=True)},
                                 repeats=args.repeats, warmup=args.warmup)
        table.add(f"forward + backward + AdamW step, 2 x {SIZE}x{SIZE}, VGG-style backbone", threads,
                  times["pydetect"], "torchvision FasterRCNN", times["torchvision"])
    rates = {}
    if args.loop:
        for threads in args.threads:
            set_threads(threads)
            for _ in range(3):
                for prefetch in (0, 2):
                    torch.manual_seed(0)
                    _, model = pydetect_model(copy.deepcopy(backbone), num_classes)
                    rates.setdefault((threads, prefetch), []).append(loop_rate(model, prefetch, args.loop))
            print(f"{threads} thread(s), {args.loop} iterations: " + "; ".join(
                f"prefetch={p}: " + ", ".join(f"{r:.2f}" for r in rates[(threads, p)]) + " it/s" for p in (0, 2)),
                flush=True)
    if args.record:
        table.record(RESULTS, "CNN training step vs torchvision (issue 23)",
                     f"`benchmarks/bench_train_step.py`: torch {torch.__version__}, torchvision "
                     f"{torchvision.__version__}, load average {' '.join(load)} at the start, commit {commit}; "
                     f"median of {args.repeats} iterations after {args.warmup} warm-up ones, alternating.")

if __name__ == "__main__":
    main()
