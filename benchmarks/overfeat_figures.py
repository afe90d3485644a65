"""Figures and the CAM measurement for the README (issue 21).

1. ``overfeat_score_maps.png``: a digits ``val`` image with a trained OverFeat's detections,
   and the class score map (the dense classifier's probability, the best pyramid scale per
   pixel) of the detected classes, drawn over the image with ``pydetect.viz``.
2. ``cam_digits.png`` and the CAM peak rate: a crop classifier
   (:class:`pydetect.models.CropClassifier`, the R-CNN family's pretraining network: VGG-style
   backbone, global average pooling, linear) trained on the train split's crops; on square
   crops of every ``val`` object (twice the object's longer side, the object off-centre by
   up to a quarter), how often the class activation map of the object's class peaks inside
   the object's box. Grad-CAM of the OverFeat network on one window is drawn beside it.

Usage: python benchmarks/overfeat_figures.py MODEL [--seconds 120] [--out benchmarks]
(MODEL: an OverFeat model file, e.g. from ``pydetect bench detectors``'s ``OUT/models``).
"""

import argparse
import os

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pydetect import data, explain, models, viz
from pydetect.detectors import OverFeat
from pydetect import engine


def save(fig, path):
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print("wrote", path)


def score_map_figure(detector, image, path):
    dets = detector.predict(image)
    maps = detector.predict_score_maps(image)
    labels = sorted(set(dets.labels[dets.scores > 0.5].tolist()))[:3] or [int(dets.labels[0])]
    fig = Figure(figsize=(4 * (1 + len(labels)), 4))
    ax = fig.add_subplot(1, 1 + len(labels), 1)
    ax.imshow(viz.draw_detections(image, dets, detector.class_names_, score_threshold=0.5))
    ax.set_title("OverFeat detections (score > 0.5)")
    ax.axis("off")
    for k, label in enumerate(labels):
        heat = np.max([viz.score_map_heat(m, label + 1, image.shape) for m in maps], axis=0)
        ax = fig.add_subplot(1, 1 + len(labels), 2 + k)
        ax.imshow(viz.overlay_heatmap(image, heat, vmin=0.0, vmax=1.0))
        ax.set_title(f"score map of class {detector.class_names_[label]!s} ({len(maps)} scales, max)")
        ax.axis("off")
    save(fig, path)


def object_crops(dataset, rng, side_factor=2.0, size=64):
    for image, t in dataset:
        for box, label in zip(t["boxes"], t["labels"]):
            side = side_factor * max(box[2] - box[0], box[3] - box[1])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x0 = cx - side / 2 + rng.uniform(-0.25, 0.25) * side
            y0 = cy - side / 2 + rng.uniform(-0.25, 0.25) * side
            a = size / side
            m = np.array([[a, 0, -a * x0], [0, a, -a * y0]], np.float32)
            crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            yield crop, int(label), ((box[0] - x0) * a, (box[1] - y0) * a, (box[2] - x0) * a, (box[3] - y0) * a)


def cam_figure(detector, seconds, out):
    torch.manual_seed(0)
    train = data.digits_in_clutter("train")
    crops, labels, _ = engine.extract_crops(train, copies=4, seed=0)
    acc, clf = engine.pretrain_backbone(models.VGGStyle(), crops, labels, 11, seconds=seconds, max_epochs=60,
                                   return_classifier=True)
    clf.eval()
    val = data.digits_in_clutter("val")
    hits = total = 0
    shown = []
    for crop, label, box in object_crops(val, np.random.default_rng(0)):
        cam = explain.class_activation_map(clf, crop, label + 1)
        py, px = np.unravel_index(np.argmax(cam), cam.shape)
        inside = box[0] <= px + 0.5 <= box[2] and box[1] <= py + 0.5 <= box[3]
        hits += int(inside)
        total += 1
        if len(shown) < 4:
            shown.append((crop, cam, label, box))
    rate = hits / total
    print(f"crop classifier: held-out crop accuracy {acc:.3f} after {seconds:.0f} s; CAM peak inside the box for "
          f"{hits} of {total} val objects ({rate:.3f})")
    fig = Figure(figsize=(3 * len(shown), 6.3))
    for k, (crop, cam, label, box) in enumerate(shown):
        ax = fig.add_subplot(2, len(shown), 1 + k)
        drawn = viz.overlay_heatmap(crop, cam)
        cv2.rectangle(drawn, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (255, 255, 255), 1)
        ax.imshow(drawn)
        ax.set_title(f"CAM, class {label}")
        ax.axis("off")
        # Grad-CAM of the OverFeat window classifier on the same crop, resized to its window.
        window = cv2.resize(crop, (detector.window, detector.window), interpolation=cv2.INTER_AREA)
        heat = explain.grad_cam(detector.net_, detector.net_.features, window, label + 1)
        ax = fig.add_subplot(2, len(shown), 1 + len(shown) + k)
        ax.imshow(viz.overlay_heatmap(window, heat))
        ax.set_title("Grad-CAM, OverFeat window")
        ax.axis("off")
    fig.suptitle(f"CAM peaks inside the object's box for {rate:.0%} of {total} val objects")
    save(fig, os.path.join(out, "cam_digits.png"))
    return rate, total, acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    detector = OverFeat.load(args.model)
    image = data.digits_in_clutter("val", n_images=4)[3][0]
    score_map_figure(detector, image, os.path.join(args.out, "overfeat_score_maps.png"))
    cam_figure(detector, args.seconds, args.out)


if __name__ == "__main__":
    main()
