"""Faster R-CNN inference with a ResNet-18 FPN backbone: pydetect vs torchvision, same settings.

Both models: ResNet-18 body, FPN (256 channels) on stages 1-4 without the extra max-pool
level, anchors 32/64/128/256 (one size per level) x ratios 0.5/1/2, RPN 1000 pre-/post-NMS
proposals at test, NMS 0.7, MultiScaleRoIAlign 7x7 sampling 2, two-MLP head 1024, score
threshold 0.05, NMS 0.5, 100 detections; random weights (nothing can be downloaded here),
eval mode, one 512x512 image, same thread count, interleaved runs, median of --repeat.
The convolutions are torch's in both; the pipeline around them (anchors, proposal
filtering, NMS, RoIAlign, box coding) is pydetect's in one and torchvision's in the other.

    PYTHONPATH=. /work/venv-tv/bin/python benchmarks/bench_detectors.py [--threads 2]

Second mode, the detection-quality table: train one detector at its default budget on
digits_in_clutter (500 train images), evaluate on the test split (200 images) with
pydetect.eval (COCO AP / AP50, VOC mAP), report training time and inference ms per image:

    PYTHONPATH=. python benchmarks/bench_detectors.py --train faster|fast|rcnn [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import pydetect
from pydetect import models, ops


def build_ours(num_classes=11):
    body = models.ResNet18Style(return_layers=(1, 2, 3, 4))
    backbone = models.BackboneWithFPN(body, 256)
    anchors = models.AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),))
    rpn = models.RegionProposalNetwork(anchors, models.RPNHead(256, 3),
                                       pre_nms_top_n={"training": 2000, "testing": 1000},
                                       post_nms_top_n={"training": 2000, "testing": 1000}, nms_thresh=0.7)
    pooler = ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    heads = models.RoIHeads(pooler, models.TwoMLPHead(256 * 49, 1024), models.FastRCNNPredictor(1024, num_classes),
                            score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
    return models.GeneralizedRCNN(backbone, rpn, heads, image_mean=(0.485, 0.456, 0.406),
                                  image_std=(0.229, 0.224, 0.225), size_divisible=32).eval()


def build_torchvision(num_classes=11):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

    class NoExtra(ExtraFPNBlock):
        def forward(self, results, x, names):
            return results, names

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   returned_layers=[1, 2, 3, 4], extra_blocks=NoExtra())
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4)
    return FasterRCNN(backbone, num_classes=num_classes, min_size=512, max_size=512,
                      rpn_anchor_generator=anchors, rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000,
                      box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100).eval()


def train_and_evaluate(name, torch_threads, n_train=500, n_test=200, checkpoint_dir=None):
    from pydetect import eval as pdeval
    from pydetect.data import digits_in_clutter
    from pydetect.detectors import RCNN, FastRCNN, FasterRCNN

    cls = {"faster": FasterRCNN, "fast": FastRCNN, "rcnn": RCNN}[name]
    train = digits_in_clutter("train", n_images=n_train)
    test = digits_in_clutter("test", n_images=n_test)
    det = cls(num_threads=torch_threads, progress=False, checkpoint_dir=checkpoint_dir)
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    images = [test[i][0] for i in range(len(test))]
    t0 = time.perf_counter()
    old = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    dets = det.predict_batch(images)
    torch.set_num_threads(old)
    ms = (time.perf_counter() - t0) / len(images) * 1e3
    coco = pdeval.coco_evaluate(test, dets)
    voc = pdeval.voc_evaluate(test, dets)
    extra = {k: getattr(det, k) for k in ("pretrain_accuracy_", "proposal_recall_") if hasattr(det, k)}
    if hasattr(det, "history_"):
        extra["iterations"] = det.history_["iterations"]
    print(f"{cls.__name__}: COCO AP {coco['AP']:.3f} AP50 {coco['AP50']:.3f} AP75 {coco['AP75']:.3f} VOC mAP {voc['mAP']:.3f} "
          f"fit {fit_s / 60:.1f} min, inference {ms:.0f} ms/image, {extra}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", choices=("faster", "fast", "rcnn"))
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    if args.train:
        return train_and_evaluate(args.train, args.torch_threads, checkpoint_dir=args.checkpoint_dir)
    torch.set_num_threads(args.threads)
    pydetect.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, theirs = build_ours(), build_torchvision()
    image = torch.rand(3, args.size, args.size)
    t_ours, t_tv = [], []
    with torch.no_grad():
        ours([image]), theirs([image])  # warm-up
        for _ in range(args.repeat):
            t0 = time.perf_counter(); d1 = ours([image]); t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); d2 = theirs([image]); t_tv.append(time.perf_counter() - t0)
    mo, mt = statistics.median(t_ours), statistics.median(t_tv)
    print(f"FasterRCNN R18-FPN {args.size}px  pydetect {mo * 1e3:8.1f} ms  torchvision {mt * 1e3:8.1f} ms  "
          f"ratio {mo / mt:5.2f}  (detections {len(d1[0]['boxes'])} / {len(d2[0]['boxes'])}, "
          f"threads={args.threads}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
