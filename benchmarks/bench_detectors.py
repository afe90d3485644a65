"""Faster R-CNN inference with a ResNet-18 FPN backbone: pydetect vs torchvision, same settings.

Both models: ResNet-18 body, FPN (256 channels) on stages 1-4 without the extra max-pool
level, anchors 32/64/128/256 (one size per level) x ratios 0.5/1/2, RPN 1000 pre-/post-NMS
proposals at test, NMS 0.7, MultiScaleRoIAlign 7x7 sampling 2, two-MLP head 1024, score
threshold 0.05, NMS 0.5, 100 detections; random weights (nothing can be downloaded here),
eval mode, one 512x512 image, same thread count, interleaved runs (the order rotating),
median of --repeat. The convolutions are torch's in both; the pipeline around them (anchors,
proposal filtering, NMS, RoIAlign, box coding) is pydetect's in one and torchvision's in the
other. Each library runs in both memory layouts: NCHW (torch's default, torchvision's as
shipped) and channels-last (NHWC convolutions, pydetect's as shipped); the layout of the
first FPN level is checked and printed.

    PYTHONPATH=. /work/venv-tv/bin/python benchmarks/bench_detectors.py [--threads 1 2]

Second mode, the detection-quality table: train one detector at its default budget on
digits_in_clutter (500 train images), evaluate on the test split (200 images) with
pydetect.eval (COCO AP / AP50, VOC mAP), report training time and inference ms per image:

    PYTHONPATH=. python benchmarks/bench_detectors.py --train faster|fast|rcnn [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import time

import torch

from pydetect import models, ops
from pydetect.bench.timing import load_average, machine, set_threads, time_alternating


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


def with_layout(model, layout):
    """A copy of the model whose convolutions run in ``layout`` ("nchw" or "channels_last")."""
    model = copy.deepcopy(model)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model.to(memory_format=fmt)
    if hasattr(model, "batch_images"):  # pydetect makes its input batch channels-last itself
        batch = model.batch_images

        def batch_images(images):
            x, sizes = batch(images)
            return x.contiguous(memory_format=fmt), sizes

        model.batch_images = batch_images
    return model


def feature_layout(model, image):
    """Memory layout of the backbone's first output map on ``image``."""
    seen = []
    hook = model.backbone.register_forward_hook(lambda m, i, out: seen.append(next(iter(out.values()))))
    with torch.no_grad():
        model([image])
    hook.remove()
    return "channels_last" if seen[0].is_contiguous(memory_format=torch.channels_last) else "nchw"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", choices=("faster", "fast", "rcnn"))
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    if args.train:
        return train_and_evaluate(args.train, args.torch_threads, checkpoint_dir=args.checkpoint_dir)
    import torchvision

    torch.manual_seed(0)
    base = {"pydetect": build_ours(), "torchvision": build_torchvision()}
    models_ = {(lib, layout): with_layout(m, layout) for lib, m in base.items() for layout in ("nchw", "channels_last")}
    image = torch.rand(3, args.size, args.size)
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; load average {load_average()}")
    for key, m in models_.items():
        got = feature_layout(m, image)
        if got != key[1]:
            raise RuntimeError(f"{key}: feature maps are {got}")
    rows = []
    for n in args.threads:
        set_threads(n)
        with torch.no_grad():
            fns = {key: functools.partial(m, [image]) for key, m in models_.items()}
            n_det = {key: len(fn()[0]["boxes"]) for key, fn in fns.items()}
            t = time_alternating(fns, args.repeat)
        for layout in ("nchw", "channels_last"):
            ours, theirs = t[("pydetect", layout)], t[("torchvision", layout)]
            rows.append(f"| {n} | {layout} | {ours * 1e3:.0f} | {theirs * 1e3:.0f} | {ours / theirs:.2f} | "
                        f"{n_det[('pydetect', layout)]} / {n_det[('torchvision', layout)]} |")
            print(rows[-1], flush=True)
        best_ours = min(t[("pydetect", lay)] for lay in ("nchw", "channels_last"))
        best_theirs = min(t[("torchvision", lay)] for lay in ("nchw", "channels_last"))
        print(f"threads={n}: each library's faster layout: pydetect {best_ours * 1e3:.0f} ms, torchvision "
              f"{best_theirs * 1e3:.0f} ms, ratio {best_ours / best_theirs:.2f}", flush=True)
    print(f"load average at the end: {load_average()}")
    print("\n| threads | layout (both) | pydetect ms | torchvision ms | ratio | detections |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
