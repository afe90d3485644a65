"""The ``pydetect`` command line (also ``python -m pydetect``).

Each verb is a pair: ``_add_<verb>(subparsers)`` declares its arguments and sets
``func`` to a ``_run_<verb>(args)`` that returns an exit code. Expected failures (missing
files, malformed JSON, bad values) print one line ``pydetect: error: ...`` and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

_DATASETS = ("digits", "faces")


def _builtin_dataset(name: str, split: str, n_images, seed: int):
    from pydetect import data

    make = {"digits": data.digits_in_clutter, "faces": data.faces_in_clutter}[name]
    return make(split=split, n_images=n_images, seed=seed)


# export-dataset ---------------------------------------------------------------------------
def _add_export_dataset(sub):
    p = sub.add_parser("export-dataset", help="write a built-in dataset to disk in COCO format",
                       description="Writes OUT/images/*.png and OUT/annotations.json (COCO ground truth).")
    p.add_argument("dataset", choices=_DATASETS, help="built-in dataset")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--n-images", type=int, default=None, help="number of images (default: the dataset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_run_export_dataset)


def _run_export_dataset(args) -> int:
    from pydetect.data import export_coco

    dataset = _builtin_dataset(args.dataset, args.split, args.n_images, args.seed)
    path = export_coco(dataset, args.out)
    print(f"wrote {len(dataset)} images and {path}")
    return 0


# eval ---------------------------------------------------------------------------------------
def _add_eval(sub):
    p = sub.add_parser("eval", help="COCO bbox evaluation of a results JSON (the 12 standard stats)",
                       description="Prints the 12 COCO stats (identical to pycocotools' COCOeval).")
    p.add_argument("--gt", required=True, help="COCO ground-truth JSON")
    p.add_argument("--results", required=True, help="COCO results JSON")
    p.add_argument("--json", action="store_true", help="print the stats as one JSON object")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from pydetect.eval import COCO_STAT_NAMES, coco_evaluate

    stats = coco_evaluate(args.gt, args.results)
    if args.json:
        print(json.dumps({k: stats[k] for k in COCO_STAT_NAMES}))
    else:
        for name in COCO_STAT_NAMES:
            print(f"{name:>6} {stats[name]:.4f}")
    return 0


# detect -------------------------------------------------------------------------------------
def _add_detect(sub):
    p = sub.add_parser("detect", help="run a cascade or a saved detector on image files",
                       description="Writes OUT/<name>.png with the detections drawn, and OUT/results.json "
                                   "(COCO results; image ids are the images' positions, from 1, listed "
                                   "in OUT/images.json).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cascade", help="OpenCV cascade XML (Haar or LBP)")
    source.add_argument("--model", help="a detector saved with Detector.save(path)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scale-factor", type=float, default=1.1, help="cascade only (default 1.1)")
    p.add_argument("--min-neighbors", type=int, default=3, help="cascade only (default 3)")
    p.add_argument("--score-threshold", type=float, default=0.0, help="drop detections scoring below this")
    p.set_defaults(func=_run_detect)


def _run_detect(args) -> int:
    import os

    import cv2

    from pydetect._io import atomic_write
    from pydetect.data import read_image
    from pydetect.viz import draw_detections

    if args.cascade:
        from pydetect.cascade import Cascade, CascadeDetector

        detector = CascadeDetector(Cascade.load(args.cascade))
        class_names = [os.path.splitext(os.path.basename(args.cascade))[0]]

        def predict(image):
            return detector.detect(image, scale_factor=args.scale_factor, min_neighbors=args.min_neighbors)
    else:
        from pydetect.detectors import BaseDetector

        model = BaseDetector.load(args.model)
        predict = model.predict
        class_names = getattr(model, "class_names_", None)

    os.makedirs(args.out, exist_ok=True)
    results, listing = [], []
    for image_id, path in enumerate(args.images, start=1):
        image = read_image(path)
        dets = predict(image)
        dets = dets[dets.scores >= args.score_threshold]
        drawn = draw_detections(image, dets, class_names)
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"{path}: could not encode the annotated image")
        with atomic_write(os.path.join(args.out, name), "wb") as f:
            f.write(png.tobytes())
        results += dets.to_coco(image_id)
        listing.append({"id": image_id, "file_name": os.path.abspath(path), "annotated": name,
                        "detections": len(dets)})
        print(f"{path}: {len(dets)} detections")
    with atomic_write(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f)
    with atomic_write(os.path.join(args.out, "images.json"), "w") as f:
        json.dump(listing, f, indent=1)
    return 0


_VERBS = [_add_detect, _add_export_dataset, _add_eval]


def build_parser() -> argparse.ArgumentParser:
    import pydetect

    parser = argparse.ArgumentParser(prog="pydetect", description="Classical and CNN object detection.")
    parser.add_argument("--version", action="version", version=f"pydetect {pydetect.__version__}")
    parser.add_argument("--threads", type=int, default=None, help="threads for pydetect's kernels (default: all cores)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for add in _VERBS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            import pydetect

            pydetect.set_num_threads(args.threads)
        return args.func(args)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        message = str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            message = f"{exc.filename}: {exc.strerror}"
        print(f"pydetect: error: {message.splitlines()[0] if message else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pydetect: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
