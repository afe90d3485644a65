"""ISM on the built-in datasets: AP50 / COCO AP, training time, inference ms per image,
and a figure of one detection with its supporting votes.

Usage: python benchmarks/eval_ism.py faces|digits [--train 500] [--test 200] [--out benchmarks/out]
Prints one JSON line of results; with --figure writes benchmarks/ism_<dataset>_votes.png.
"""

import argparse
import json
import os
import time


import pydetect
from pydetect.data import digits_in_clutter, faces_in_clutter
from pydetect.detectors import ImplicitShapeModel
from pydetect.eval import coco_evaluate


def figure(model, image, dets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = model.explain(image, dets[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax in axes:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.axis("off")
    x1, y1, x2, y2 = dets.boxes[0]
    ax = axes[0]
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=2))
    f = info["features"]
    for i, (x, y, s) in enumerate(f):
        ax.add_patch(plt.Circle((x, y), model.patch_factor * s, fill=False, color="yellow", lw=0.6))
    v = info["votes"]
    fx = f[info["vote_feature"]]
    for (ux, uy, _), (vx, vy, _) in zip(fx, v):
        ax.plot([ux, vx], [uy, vy], color="cyan", lw=0.4, alpha=0.6)
    ax.scatter(v[:, 0], v[:, 1], s=40 * info["weights"] / info["weights"].max(), c="red", zorder=3)
    hx, hy, hs = info["hypothesis"]
    ax.plot([hx], [hy], "w+", ms=12, mew=2)
    ax.set_title(f"{model.class_names_[int(dets.labels[0])]}: score {dets.scores[0]:.2f}, "
                 f"{len(f)} features, {len(v)} votes")
    axes[1].imshow(info["figure"], cmap="magma", alpha=0.6, vmin=0, vmax=1)
    axes[1].set_title("top-down segmentation: p(figure)")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=90)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["faces", "digits"])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="{}", help="JSON of ImplicitShapeModel parameters")
    parser.add_argument("--figure", action="store_true")
    args = parser.parse_args()
    pydetect.set_num_threads(args.threads)
    make = faces_in_clutter if args.dataset == "faces" else digits_in_clutter
    train, test = make("train", n_images=args.train), make("test", n_images=args.test)
    params = json.loads(args.params)
    model = ImplicitShapeModel(**params)
    t = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t
    images = [image for image, _ in test]
    t = time.perf_counter()
    dets = [model.predict(image) for image in images]
    ms = (time.perf_counter() - t) / len(images) * 1e3
    r = coco_evaluate(test, dets)
    out = {"dataset": args.dataset, "train": args.train, "test": args.test, "params": params,
           "fit_s": round(fit_s, 1), "ms_per_image": round(ms, 1), "AP50": round(r["AP50"], 4),
           "AP": round(r["AP"], 4), "AR100": round(r["AR100"], 4),
           "entries": {model.class_names_[k]: int(len(m.centres)) for k, m in model.models_.items()},
           "occurrences": int(sum(len(m.occurrences) for m in model.models_.values()))}
    if args.dataset == "digits":
        out["per_class_AP"] = {k: round(v, 3) for k, v in r["per_class"].items()}
    print(json.dumps(out))
    if args.figure:
        # The most confident correct detection of the first test images.
        from pydetect.ops import box_iou

        for (image, target), d in zip(test, dets):
            if len(d) and len(target["boxes"]) and box_iou(d.boxes[:1], target["boxes"]).max() >= 0.5:
                figure(model, image, d, os.path.join(os.path.dirname(__file__), f"ism_{args.dataset}_votes.png"))
                break


if __name__ == "__main__":
    main()
