"""Inference of torchvision's Faster R-CNN and of the pydetect network converted from it
(``pydetect.models.from_torchvision``; issue 24, item 2): same weights, same function, each
library's own ops.

Both networks compute the same outputs (tests/models/test_torchvision_faster_rcnn.py); what
differs is the code around the shared convolutions: pydetect's RPN filtering, C++ NMS and
RoIAlign, box decoding and postprocessing against torchvision's. Rows: the whole forward pass
(transform, backbone, RPN, RoI heads, postprocessing), then the part after the backbone alone
(RPN + RoI heads on the same features), where the libraries' own code runs.

``fasterrcnn_resnet50_fpn`` and ``fasterrcnn_mobilenet_v3_large_fpn`` with random weights
(nothing can be downloaded; batch-norm statistics estimated on random images, so that scores are
spread as a trained model's are) and torchvision's default resize (800 / 1333), on 2 photos
scikit-image ships (astronaut 512x512, coffee 400x600) at 91 COCO classes, with a score
threshold of 0.001 so that the postprocessing has its full 100 detections per image to sort.
Median of --repeats calls after --warmup, the libraries alternating call by call, at each
thread count. Needs torchvision (a peer, not a dependency) and scikit-image.

    PYTHONPATH=. python benchmarks/bench_torchvision_detector.py [--threads 1 2] [--repeats 5] [--record]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import torch

from pydetect import models
from pydetect.bench.results import Table
from pydetect.bench.timing import set_threads, time_alternating
from pydetect.engine import image_to_tensor

RESULTS = Path(__file__).with_name("RESULTS.md")


def calibrated(model, seed=5):
    """Batch-norm statistics estimated on 4 random images, then frozen as a trained model's are."""
    import torchvision

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.backbone.train()
    with torch.no_grad():
        batch, _ = model.transform([torch.rand(3, 400, 500, generator=g) for _ in range(4)])
        model.backbone(batch.tensors)

    def freeze(module):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
                setattr(module, name, frozen)
            else:
                freeze(child)
    freeze(model)
    return model.eval()


def photos():
    from skimage import data as skdata

    return [image_to_tensor(skdata.astronaut()), image_to_tensor(skdata.coffee())]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--record", action="store_true", help=f"write the table into {RESULTS.name}")
    args = ap.parse_args()
    import torchvision
    from torchvision.models import detection

    images = photos()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {os.cpu_count()} cores, "
          f"load {' '.join(load)}, commit {commit}")
    table = Table("Faster R-CNN inference: converted from torchvision vs torchvision")
    for arch, build in (("resnet50_fpn", detection.fasterrcnn_resnet50_fpn),
                        ("mobilenet_v3_large_fpn", detection.fasterrcnn_mobilenet_v3_large_fpn)):
        torch.manual_seed(0)
        peer = calibrated(build(weights=None, weights_backbone=None, box_score_thresh=0.001))
        ours = models.from_torchvision(peer)
        with torch.no_grad():
            batch, _ = peer.transform(images)
            features = peer.backbone(batch.tensors)
            shape, sizes = tuple(batch.tensors.shape[-2:]), batch.image_sizes

            def peer_heads():
                proposals, _ = peer.rpn(batch, features)
                return peer.roi_heads(features, proposals, sizes)

            def our_heads():
                proposals, _ = ours.rpn(shape, sizes, list(features.values()))
                return ours.roi_heads(features, proposals, sizes)

            for threads in args.threads:
                set_threads(threads)
                times = time_alternating({"pydetect": lambda: ours(images), "torchvision": lambda: peer(images)},
                                         repeats=args.repeats, warmup=args.warmup)
                table.add(f"{arch}: whole forward, 2 photos at 800 px", threads, times["pydetect"],
                          "torchvision", times["torchvision"])
                times = time_alternating({"pydetect": our_heads, "torchvision": peer_heads},
                                         repeats=args.repeats * 2, warmup=args.warmup)
                table.add(f"{arch}: RPN + RoI heads on the same features", threads, times["pydetect"],
                          "torchvision", times["torchvision"])
    if args.record:
        table.record(RESULTS, "Faster R-CNN converted from torchvision (issue 24)",
                     f"`benchmarks/bench_torchvision_detector.py`: torch {torch.__version__}, torchvision "
                     f"{torchvision.__version__}, load average {' '.join(load)} at the start, commit {commit}; "
                     f"median of {args.repeats} calls (RPN + heads: {2 * args.repeats}) after {args.warmup} "
                     f"warm-up, alternating. Same weights and outputs (the parity test); the backbone's "
                     f"convolutions are the same torch calls in both, so the whole-forward ratio is near 1 "
                     f"by construction and the RPN + heads rows show what each library's own code costs.")


if __name__ == "__main__":
    main()
