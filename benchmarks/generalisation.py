"""Generalisation: the models of a ``pydetect bench detectors`` run on digits rendered differently.

``digits_in_clutter("test")`` draws writing and background photos that training never sees, but
renders them as training does. This script renders the same test digits another way, one change
at a time and all together, and evaluates the models a bench run saved (``OUT/report.json``
names them) on each rendering:

- ``ink``: saturated ink of any hue (training ink is dark or bright grey-ish, near the local
  background's colour) at lower contrast (opacity 0.4-0.8 instead of 0.55-1.0);
- ``resampling``: the 8x8 digit upscaled with nearest-neighbour or bicubic interpolation
  (training: bilinear), then a slight Gaussian blur or sensor noise;
- ``backgrounds``: photos no split uses (scikit-image's ``text``, ``page``, ``clock``,
  ``microaneurysms``: text and numerals among them, the hardest clutter for a digit detector);
- ``all``: the three together.

Every rendering is a deterministic function of (seed, image index); no model is trained here.

    PYTHONPATH=. python benchmarks/generalisation.py --bench OUT [--bench OUT2 ...] [--renderings all]
        [--only faster_rcnn]

(The ``test`` rendering is the bench run's own test split: its figures equal the run's table.)

``--split val`` renders the val digits on the val photos instead (``ink`` and ``resampling``
only), for choosing recipes on val; run the bench with ``--eval-split val`` then.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from pydetect.data import builtin
from pydetect.data.dataset import DetectionDataset

RENDERINGS = ("test", "ink", "resampling", "backgrounds", "all")


def _unused_photos():
    from skimage import data as skdata

    # The training photos are never among them (builtin.background_names lists every split's).
    used = {n for s in builtin.SPLITS for n in builtin.background_names(s)}
    assert not used & {"text", "page", "clock", "microaneurysms"}
    out = []
    for load in (skdata.text, skdata.page, skdata.clock, skdata.microaneurysms):
        img = load()
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(img[:, :, :3], dtype=np.uint8))
    return out


def _crop(rng, photos, h, w):
    import cv2

    src = photos[rng.integers(len(photos))]
    ph, pw = src.shape[:2]
    scale = rng.uniform(0.5, 1.5)
    ch, cw = min(ph, max(8, int(round(h * scale)))), min(pw, max(8, int(round(w * scale))))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    out = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (w, h),
                     interpolation=cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def _saturated_ink(rng, local):
    """A saturated colour of random hue, flipped in brightness if it would barely show."""
    import colorsys

    rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.7, 1.0), rng.uniform(0.5, 1.0))) * 255
    if np.abs(rgb - local).mean() < 60:
        rgb = 255.0 - rgb
    return rgb


def shifted_digits(rendering: str, n_images: int = 200, seed: int = 0, split: str = "test") -> DetectionDataset:
    """``split``'s digits, rendered with ``rendering`` (one of :data:`RENDERINGS`).

    ``split="val"`` renders the val digits on the val photos, for screening recipes
    (``benchmarks/screen_augment.py``); it has no ``backgrounds`` or ``all`` rendering: the
    unused photos are kept for the one measurement on ``test``.
    """
    import cv2

    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    if rendering == "test":
        return builtin.digits_in_clutter(split, n_images=n_images, seed=seed)
    if split == "val" and rendering in ("backgrounds", "all"):
        raise ValueError(f"rendering {rendering!r} is for the test split only")
    ink = rendering in ("ink", "all")
    resampling = rendering in ("resampling", "all")
    backgrounds = rendering in ("backgrounds", "all")
    photos = _unused_photos() if backgrounds else None
    digits, labels = builtin._digits()
    pool = builtin.digit_indices(split)
    images, targets = [], []
    for i in range(n_images):
        rng = np.random.default_rng([seed, 77 if split == "test" else 78, RENDERINGS.index(rendering), i])
        h, w = (int(v) for v in rng.integers(builtin._IMAGE_SIZE[0], builtin._IMAGE_SIZE[1] + 1, size=2))
        img = _crop(rng, photos, h, w) if backgrounds else builtin._background(rng, split, h, w)
        boxes, labs = [], []
        for _ in range(int(rng.integers(1, 7))):
            idx = int(pool[rng.integers(len(pool))])
            s = int(rng.integers(builtin._DIGIT_SIZE[0], builtin._DIGIT_SIZE[1] + 1))
            sh, sw = min(h, int(round(s * rng.uniform(0.9, 1.25)))), min(w, s)
            d = digits[idx]
            rows, cols = np.flatnonzero(d.max(axis=1) > 0), np.flatnonzero(d.max(axis=0) > 0)
            box = (cols[0] * sw / 8.0, rows[0] * sh / 8.0, (cols[-1] + 1) * sw / 8.0, (rows[-1] + 1) * sh / 8.0)
            for _ in range(30):
                x, y = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
                cand = (x + box[0], y + box[1], x + box[2], y + box[3])
                if not boxes or builtin._overlap(cand, boxes).max() <= builtin._MAX_OVERLAP:
                    where = (x, y)
                    break
            else:
                continue
            x, y = where
            interp = (cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_CUBIC) if resampling else cv2.INTER_LINEAR
            alpha = np.clip(cv2.resize(d, (sw, sh), interpolation=interp), 0, 1)
            if resampling and rng.random() < 0.5:
                alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 1.2))
            local = img[y:y + sh, x:x + sw].reshape(-1, 3).mean(axis=0)
            if ink:
                opacity, color = rng.uniform(0.4, 0.8), _saturated_ink(rng, local)
            else:
                opacity = rng.uniform(0.55, 1.0)
                dark = local * rng.uniform(0.0, 0.35)
                bright = local + (255.0 - local) * rng.uniform(0.65, 1.0)
                first, second = (dark, bright) if rng.random() < 0.5 else (bright, dark)
                color = first if np.abs(first - local).mean() >= 60 else second
                color = np.clip(color + rng.normal(0, 20, size=3), 0, 255)
            builtin._blend(img, x, y, np.clip(alpha * opacity, 0, 1), color)
            boxes.append((x + box[0], y + box[1], x + box[2], y + box[3]))
            labs.append(int(labels[idx]))
        if resampling and rng.random() < 0.5:
            img = np.clip(np.rint(img + rng.normal(0, rng.uniform(3, 8), img.shape)), 0, 255).astype(np.uint8)
        images.append(img)
        targets.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                        "labels": np.asarray(labs, np.int64)})
    return DetectionDataset(images, targets, [str(c) for c in range(10)])


def main():
    from pydetect.detectors import BaseDetector
    from pydetect.eval import coco_evaluate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", action="append", required=True, help="a bench detectors output directory")
    p.add_argument("--n-images", type=int, default=200)
    p.add_argument("--renderings", default=None,
                   help="comma-separated (default: all; with --split val: test,ink,resampling)")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="whose digits and photos (val: for choosing recipes; 'test' rendering = the split's own)")
    p.add_argument("--only", default=None, help="comma-separated detector keys (default: every row)")
    p.add_argument("--out", default="benchmarks/out/generalisation.jsonl")
    args = p.parse_args()
    renderings = args.renderings or (",".join(RENDERINGS) if args.split == "test" else "test,ink,resampling")
    sets = {r: shifted_digits(r, args.n_images, split=args.split) for r in renderings.split(",")}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    for bench in args.bench:
        with open(os.path.join(bench, "report.json")) as f:
            report = json.load(f)
        for row in report["rows"]:
            if args.only and row["key"] not in args.only.split(","):
                continue
            detector = BaseDetector.load(row["model_path"])
            result = {"bench": bench, "split": args.split, "code": report.get("code"), "detector": row["name"],
                      "augment": repr(detector.get_params().get("augment")),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            for name, ds in sets.items():
                stats = coco_evaluate(ds, detector.predict_batch([im for im, _ in ds]))
                result[name] = {"AP": round(stats["AP"], 3), "AP50": round(stats["AP50"], 3)}
            print(json.dumps(result), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
