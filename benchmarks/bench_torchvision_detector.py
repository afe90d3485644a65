"""Inference of torchvision's Faster R-CNN and of the pydetect network converted from it
(``pydetect.models.from_torchvision``; issue 24, item 2): same weights, same function, each
library's own ops.

Both networks compute the same outputs (tests/models/test_torchvision_faster_rcnn.py); what
differs is the code around the shared convolutions and matrix products: pydetect's RPN
filtering, C++ NMS and RoIAlign, box decoding and postprocessing against torchvision's. Rows:
the whole forward pass (transform, backbone, RPN, RoI heads, postprocessing), then each
library's own stages on the same inputs: the RPN after its convolutions (given the same head
outputs), the RoI pooling of the same proposals, and the detections from the same box-head
outputs.

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
from pydetect.bench.torchvision_models import calibrated_detector
from pydetect.engine import image_to_tensor

RESULTS = Path(__file__).with_name("RESULTS.md")


class _CachedHead(torch.nn.Module):
    """An RPN head that returns given outputs, so that the RPN's own code is what is timed."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, features):
        return self.outputs


def _with_cached_head(rpn, outputs):
    import copy

    rpn = copy.copy(rpn)  # shallow: the same anchors and settings, another head
    rpn._modules = dict(rpn._modules, head=_CachedHead(outputs))
    return rpn


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
        peer = calibrated_detector(build(weights=None, weights_backbone=None, box_score_thresh=0.001),
                                   image_size=(400, 500))
        ours = models.from_torchvision(peer)
        with torch.no_grad():
            batch, _ = peer.transform(images)
            features = peer.backbone(batch.tensors)
            shape, sizes = tuple(batch.tensors.shape[-2:]), batch.image_sizes
            levels = list(features.values())
            head_out = peer.rpn.head(levels)  # the same convolution outputs for both RPNs
            peer_rpn, our_rpn = _with_cached_head(peer.rpn, head_out), _with_cached_head(ours.rpn, head_out)
            proposals, _ = peer_rpn(batch, features)
            pooled = peer.roi_heads.box_roi_pool(features, proposals, sizes)
            logits, deltas = peer.roi_heads.box_predictor(peer.roi_heads.box_head(pooled))
            cases = [
                ("whole forward, 2 photos at 800 px", lambda: ours(images), lambda: peer(images), 1),
                ("RPN after its convolutions: anchors, decoding, top-k, NMS per level",
                 lambda: our_rpn(shape, sizes, levels), lambda: peer_rpn(batch, features), 3),
                ("RoI pooling (MultiScaleRoIAlign, 7x7, sampling 2)",
                 lambda: ours.roi_heads.box_roi_pool(features, proposals, sizes),
                 lambda: peer.roi_heads.box_roi_pool(features, proposals, sizes), 3),
                ("detections from the box head's outputs: decoding, softmax, NMS per class",
                 lambda: ours.roi_heads.postprocess(logits, deltas, proposals, sizes),
                 lambda: peer.roi_heads.postprocess_detections(logits, deltas, proposals, sizes), 3),
            ]
            for threads in args.threads:
                set_threads(threads)
                for name, mine, theirs, more in cases:
                    times = time_alternating({"pydetect": mine, "torchvision": theirs},
                                             repeats=args.repeats * more, warmup=args.warmup)
                    table.add(f"{arch}: {name}", threads, times["pydetect"], "torchvision", times["torchvision"])
    if args.record:
        table.record(RESULTS, "Faster R-CNN converted from torchvision (issue 24)",
                     f"`benchmarks/bench_torchvision_detector.py`: torch {torch.__version__}, torchvision "
                     f"{torchvision.__version__}, load average {' '.join(load)} at the start, commit {commit}; "
                     f"median of {args.repeats} calls (stages: {3 * args.repeats}) after {args.warmup} "
                     f"warm-up, alternating. Same weights and outputs (the parity test); the backbone's "
                     f"convolutions are the same torch calls in both, so the whole-forward ratio is near 1 "
                     f"by construction, and the stage rows show what each library's own code costs.")


if __name__ == "__main__":
    main()
