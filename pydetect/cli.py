"""The ``pydetect`` command line (also ``python -m pydetect``).

Each verb is a pair: ``_add_<verb>(subparsers)`` declares its arguments and sets
``func`` to a ``_run_<verb>(args)`` that returns an exit code. Every failure prints one
line ``pydetect: error: ...`` on stderr, never a traceback, and exits 2 for bad input
(missing, unreadable or malformed files, corrupt images, bad values) or 1 for anything
else; ``pydetect --traceback VERB ...`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import time

import pydetect
from pydetect import data
from pydetect._validation import check_num_threads, check_real
from pydetect.bench.detectors import DETECTORS, Splits, build_detector, load_splits, recipe, run_detector_benchmark
from pydetect.bench.ops import FAMILIES, run_op_benchmarks
from pydetect.bench.report import format_table
from pydetect.data import export_coco
from pydetect.eval import COCO_STAT_NAMES, coco_evaluate, voc_evaluate
from pydetect.inference import detect_folder

_DATASETS = ("digits", "faces")


def _builtin_dataset(name: str, split: str, n_images, seed: int):
    make = {"digits": data.digits_in_clutter, "faces": data.faces_in_clutter}[name]
    return make(split=split, n_images=n_images, seed=seed)


# export-dataset ---------------------------------------------------------------------------
def _add_export_dataset(sub):
    p = sub.add_parser("export-dataset", help="write a built-in dataset to disk in COCO format",
                       description="Writes OUT/images/*.png and OUT/annotations.json (COCO ground truth).")
    p.add_argument("dataset", choices=_DATASETS, help="built-in dataset")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--n-images", type=int, default=None, help="number of images (default: the dataset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_run_export_dataset)


def _run_export_dataset(args) -> int:
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
    stats = coco_evaluate(args.gt, args.results)
    if args.json:
        print(json.dumps({k: stats[k] for k in COCO_STAT_NAMES}))
    else:
        for name in COCO_STAT_NAMES:
            print(f"{name:>6} {stats[name]:.4f}")
    return 0


# detect -------------------------------------------------------------------------------------
def _tile_size(text):
    """``512`` or ``512,768`` / ``512x768`` (height, width)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _add_detect(sub):
    p = sub.add_parser("detect", help="run a cascade or a saved detector on any number of images",
                       description="Streams the images (files, directories, glob patterns) through the model "
                                   "and writes OUT/results.jsonl as images finish, OUT/images.json (index of the "
                                   "finished images), OUT/results.json at the end (COCO results; image ids are "
                                   "the images' positions, from 1, listed in OUT/run.json) and, unless --tile or "
                                   "--no-draw, OUT/<name>.png with the detections drawn. Run the same command "
                                   "again to resume after an interruption.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cascade", help="OpenCV cascade XML (Haar or LBP)")
    source.add_argument("--model", help="a detector saved with Detector.save(path)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, directories or glob patterns")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scale-factor", type=float, default=1.1, help="cascade only (default 1.1)")
    p.add_argument("--min-neighbors", type=int, default=3, help="cascade only (default 3)")
    p.add_argument("--score-threshold", type=float, default=None, help="drop detections scoring below this")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes, each loading the model once (default 0: this process); "
                        "with --engine ray, the number of actors")
    p.add_argument("--prefetch", type=int, default=None, help="images in flight (default 2 per worker)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes, or Ray Data actors on the cluster of RAY_ADDRESS / --ray-address")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--tile", type=_tile_size, default=None, metavar="N|H,W",
                   help="tiled inference with tiles of this size (pydetect.inference.predict_tiled)")
    p.add_argument("--overlap", type=float, default=0.2, help="tile overlap, fraction of the tile (default 0.2)")
    p.add_argument("--merge", choices=("greedy", "nms", "wbf"), default="greedy",
                   help="how boxes of overlapping tiles are merged (default greedy)")
    p.add_argument("--iou", type=float, default=0.5, help="merge threshold (default 0.5)")
    p.add_argument("--match", choices=("iou", "ios"), default=None,
                   help="merge metric (default: ios for greedy and wbf, iou for nms)")
    p.add_argument("--full-image-pass", action="store_true",
                   help="with --tile: also run once on the image downscaled to the tile's size")
    p.add_argument("--no-draw", action="store_true", help="do not write the annotated images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_detect)


def _run_detect(args) -> int:
    if args.score_threshold is not None:  # named as the user typed it
        check_real(args.score_threshold, "--score-threshold")
    summary = detect_folder(
        args.cascade or args.model, args.images, args.out, workers=args.workers, prefetch=args.prefetch,
        engine=args.engine, ray_address=args.ray_address, tile=args.tile, overlap=args.overlap,
        merge=args.merge, iou=args.iou, match=args.match, full_image_pass=args.full_image_pass,
        score_threshold=args.score_threshold, scale_factor=args.scale_factor, min_neighbors=args.min_neighbors,
        draw=args.tile is None and not args.no_draw, progress=not args.no_progress)
    print(f"{summary['done']} of {summary['images']} images, {summary['detections']} detections "
          f"in {summary['seconds']:.1f} s: {summary['results']}")
    if summary["failed"]:
        first, error = next(iter(summary["failed"].items()))
        raise ValueError(f"{len(summary['failed'])} images could not be read, e.g. {first}: {error} "
                         f"(see {summary['index']})")
    return 0


# train ---------------------------------------------------------------------------------------
def _parse_settings(pairs, with_detector: bool) -> dict:
    """``["a=1", "b=(24, 16)"]`` -> ``{"a": 1, "b": (24, 16)}`` (Python literals, else strings);
    with ``with_detector``, names are ``detector.param`` and the result is nested by detector."""
    out: dict = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects NAME=VALUE, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if with_detector:
            det, dot, param = name.partition(".")
            if not dot or not param:
                raise ValueError(f"--set expects DETECTOR.PARAM=VALUE, got {pair!r}")
            out.setdefault(det, {})[param] = value
        else:
            out[name] = value
    return out


def _add_dataset_arguments(p):
    p.add_argument("--dataset", default="digits", metavar="digits|faces|COCO_JSON",
                   help="a built-in dataset or a COCO instances JSON (default: digits)")
    p.add_argument("--images", help="image directory of a COCO JSON (default: the JSON's directory)")
    p.add_argument("--quick", action="store_true", help="the quick budget: smaller splits, a minute or two "
                                                        "of training per detector")
    p.add_argument("--eval-split", choices=("val", "test"), default="test",
                   help="the split to evaluate on (default: test); choose recipes and settings on val, "
                        "report test once")
    p.add_argument("--n-train", type=int, help="cap on the number of train images")
    p.add_argument("--n-eval", "--n-test", dest="n_eval", type=int,
                   help="cap on the number of evaluation (val or test) images")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (built-in) or split seed (COCO JSON)")


def _add_train(sub):
    p = sub.add_parser("train", help="train one detector on a built-in dataset or a COCO file",
                       description="Trains DETECTOR with the benchmark's recipe for the dataset (see "
                                   "pydetect.bench.detectors.recipe), saves it to --out (load it with "
                                   "BaseDetector.load or `pydetect detect --model`) and evaluates it on "
                                   "the evaluation split (--eval-split). With --val-dataset, trains on all of "
                                   "--dataset, scores the model on the validation set during training, keeps "
                                   "the best weights and reports their AP on it. With --checkpoint-dir, run "
                                   "the same command again to resume after an interruption.")
    p.add_argument("detector", choices=DETECTORS)
    _add_dataset_arguments(p)
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--backbone", help="the backbone parameter, e.g. resnet50_fpn (FasterRCNN: vgg, resnet18, "
                                      "resnet18_fpn, resnet34_fpn, resnet50_fpn, mobilenet_v3_large_fpn)")
    p.add_argument("--weights", metavar="PATH", help="torchvision-format weights of the backbone (a state dict "
                                                     "saved with torch.save: classification, backbone or whole "
                                                     "detection model)")
    p.add_argument("--val-dataset", metavar="VAL_JSON", help="COCO JSON of a validation set (same categories) "
                                                            "scored during training (FastRCNN, FasterRCNN)")
    p.add_argument("--val-images", metavar="DIR", help="image directory of --val-dataset (default: its directory)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="with --val-dataset: iterations between evaluations (default: at the end only)")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="checkpoints go here; the same command resumes from them")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --checkpoint-dir holds a checkpoint")
    p.add_argument("--set", action="append", metavar="PARAM=VALUE",
                   help="override a constructor parameter (Python literal; a setting of a group as "
                        "pretrain__seconds=40), repeatable")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train)


def _train_flags(args) -> dict:
    """The constructor parameters the train verb's own flags set (None: not given)."""
    flags = {"backbone": args.backbone, "weights": args.weights, "checkpoint_dir": args.checkpoint_dir,
             "eval_every": args.eval_every, "resume": False if args.no_resume else None}
    if args.eval_every is not None and args.val_dataset is None:
        raise ValueError("--eval-every needs --val-dataset (the validation set it scores)")
    return {k: v for k, v in flags.items() if v is not None}


def _splits_with_val(args):
    """Splits for --val-dataset: all of a COCO --dataset (or a built-in one's train split) to
    train on, the validation set to evaluate on."""
    if args.dataset in _DATASETS:
        train = load_splits(args.dataset, quick=args.quick, seed=args.seed, n_train=args.n_train, n_eval=1).train
        kind = args.dataset
    else:
        if not args.dataset.endswith(".json") or not os.path.isfile(args.dataset):
            raise ValueError(f"--dataset must be 'digits', 'faces' or a COCO JSON file, got {args.dataset!r}")
        train, kind = data.load_coco(args.dataset, args.images), "custom"
        if args.n_train is not None and args.n_train < len(train):
            train = train.subset(list(range(args.n_train)))
    val = data.load_coco(args.val_dataset, args.val_images)
    if args.n_eval is not None and args.n_eval < len(val):
        val = val.subset(list(range(args.n_eval)))
    description = (f"{args.dataset} ({len(train)} train images), validation set {args.val_dataset} "
                   f"({len(val)} images)")
    return Splits(train, val, "val", os.path.basename(args.dataset), kind, description)


def _report_validation(history) -> None:
    """The validation curve of a fit with a val_dataset, and the iteration whose weights were kept."""
    curve = history.get("val") or []
    if not curve:
        return
    print("validation during training: " + ", ".join(
        f"iteration {v['iteration']} AP {v['AP']:.3f} AP50 {v['AP50']:.3f}" for v in curve))
    best = history["best"]
    print(f"kept the weights of iteration {best['iteration']} (val AP {best['AP']:.3f}, AP50 {best['AP50']:.3f})")


def _run_train(args) -> int:
    overrides = _parse_settings(args.set, with_detector=False)
    flags = _train_flags(args)
    twice = sorted(set(flags) & set(overrides))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as a flag and with --set: give each once")
    if args.val_dataset is not None:
        splits = _splits_with_val(args)
    else:
        splits = load_splits(args.dataset, args.images, quick=args.quick, seed=args.seed,
                             eval_split=args.eval_split, n_train=args.n_train, n_eval=args.n_eval)
    detector = build_detector(args.detector, {**recipe(args.detector, splits.kind, args.quick), **overrides, **flags})
    if "progress" in detector.get_params():
        detector.progress = not args.no_progress
    print(f"training {detector!r} on {splits.description}", flush=True)
    t0 = time.perf_counter()
    if args.val_dataset is not None:
        detector.fit(splits.train, val_dataset=splits.evaluation)
    else:
        detector.fit(splits.train)
    history = getattr(detector, "history_", None) or {}
    if history.get("resumed_from") is not None:
        print(f"resumed from the checkpoint of iteration {history['resumed_from']} in {detector.checkpoint_dir}")
    print(f"trained in {time.perf_counter() - t0:.1f} s")
    _report_validation(history)
    detector.save(args.out)
    print(f"wrote {args.out}")
    if not args.no_eval:
        dets = detector.predict_batch([image for image, _ in splits.evaluation])
        coco, voc = coco_evaluate(splits.evaluation, dets), voc_evaluate(splits.evaluation, dets)
        what = "validation set" if args.val_dataset is not None else f"{splits.evaluation_split} split"
        print(f"{what} ({len(splits.evaluation)} images): COCO AP {coco['AP']:.3f}  AP50 {coco['AP50']:.3f}  "
              f"AP75 {coco['AP75']:.3f}  VOC mAP {voc['mAP']:.3f}")
    return 0


# bench ---------------------------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser("bench", help="compare detectors (and ops against their peer libraries)",
                       description="`bench detectors`: classical vs CNN detectors on one dataset, one report. "
                                   "`bench ops`: pydetect's ops against the installed peer libraries.")
    bench = p.add_subparsers(dest="bench_verb", metavar="WHAT")
    bench.required = True
    _add_bench_detectors(bench)
    for add in _BENCH_VERBS:
        add(bench)


def _add_bench_detectors(bench):
    p = bench.add_parser("detectors", help="train, evaluate and time every detector on the same split",
                         description="Trains (or loads from OUT/models) Viola-Jones, the Implicit Shape Model, "
                                     "OverFeat, YOLO, SSD, R-CNN, Fast R-CNN and Faster R-CNN (and, on "
                                     "faces, runs OpenCV's "
                                     "pretrained frontal-face cascade), evaluates them on the same split "
                                     "(--eval-split: val to choose settings, test to report) "
                                     "and writes OUT/report.md, OUT/report.json and plots.")
    _add_dataset_arguments(p)
    p.add_argument("--out", default="pydetect-bench", help="output directory (default: pydetect-bench)")
    p.add_argument("--detectors", help=f"comma-separated subset of {','.join(DETECTORS)}")
    p.add_argument("--set", action="append", metavar="DETECTOR.PARAM=VALUE",
                   help="override a recipe parameter (Python literal; a setting of a group as "
                        "faster_rcnn.pretrain__seconds=40), repeatable")
    p.add_argument("--retrain", action="store_true", help="ignore the models cached in OUT/models")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_bench_detectors)


def _run_bench_detectors(args) -> int:
    keys = None if not args.detectors else [k.strip() for k in args.detectors.split(",") if k.strip()]
    report = run_detector_benchmark(
        args.dataset, images=args.images, quick=args.quick, out=args.out, detectors=keys,
        progress=not args.no_progress, retrain=args.retrain, seed=args.seed,
        params=_parse_settings(args.set, with_detector=True), n_train=args.n_train, n_eval=args.n_eval,
        eval_split=args.eval_split)
    print()
    print(f"{report['dataset']}, {report['eval_split']} split ({report['budget']} budget), {report['machine']}, {report['threads']} threads, "
          f"{report['wall_seconds'] / 60:.1f} min")
    print(format_table(report))
    print(f"\nreport: {args.out}/report.md")
    return 0


def _add_bench_ops(bench):
    p = bench.add_parser("ops", help="time pydetect's ops against the installed peer libraries",
                         description="Runs pydetect and each installed peer (torchvision, OpenCV, scikit-image, "
                                     "scikit-learn, pycocotools, selectivesearch) on the same input with the same "
                                     "thread count, interleaved; prints median times, ratios (pydetect / peer, "
                                     "below 1 is faster) and whether the results agree; names the peers that "
                                     "are missing.")
    p.add_argument("--family", action="extend", nargs="+", choices=FAMILIES, metavar="FAMILY",
                   help=f"op families to run (default: all): {', '.join(FAMILIES)}")
    p.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (about a minute)")
    p.add_argument("--threads", dest="bench_threads", type=int, nargs="+", metavar="N",
                   help="thread counts to run at (default: pydetect's current count)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per case, median reported (default 7)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_run_bench_ops)


def _run_bench_ops(args) -> int:
    report = run_op_benchmarks(args.family or None, quick=args.quick, threads=args.bench_threads,
                               repeats=args.repeats, progress=print)
    print()
    print(report.markdown())
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return 0


_BENCH_VERBS: list = [_add_bench_ops]


_VERBS = [_add_bench, _add_train, _add_detect, _add_export_dataset, _add_eval]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pydetect", description="Classical and CNN object detection.",
        epilog="Errors print one line (exit status 2 for bad input, 1 otherwise); --traceback shows the "
               "full traceback and what native libraries (libpng, OpenCV, torch) wrote to stderr. Image "
               "files of more than PYDETECT_MAX_IMAGE_PIXELS pixels (environment variable, default 2**27) "
               "are refused before decoding.")
    parser.add_argument("--version", action="version", version=f"pydetect {pydetect.__version__}")
    parser.add_argument("--threads", type=int, default=None, help="threads for pydetect's kernels (default: all cores)")
    parser.add_argument("--traceback", action="store_true",
                        help="on error, show the full traceback instead of one line (for debugging)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for add in _VERBS:
        add(sub)
    return parser


# Bad input: the user can fix it from the one-line message (exit status 2). Anything else is
# a failure of pydetect or of the machine (exit status 1) and names its exception type.
_BAD_INPUT = (ValueError, TypeError, OSError)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else ""
    if not isinstance(exc, _BAD_INPUT):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        message += " (rerun with --traceback for details)"
    return message or type(exc).__name__


@contextlib.contextmanager
def _quiet_native_stderr():
    """Sends what native libraries write to file descriptor 2 (libpng's "libpng error: ...",
    libjpeg's warnings, OpenCV's log) to /dev/null, while Python's ``sys.stderr`` (messages,
    warnings, progress bars) keeps writing where it did: a failure then reads as one line."""
    try:
        python_on_fd2 = sys.stderr.fileno() == 2
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable fd 2 (e.g. a captured or closed stderr)
        saved = None
    if saved is None:
        yield
        return
    old_stderr = sys.stderr
    if python_on_fd2:
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=old_stderr.encoding,
                          errors=old_stderr.errors)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        if python_on_fd2:
            sys.stderr.close()
            sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _run(args) -> int:
    if args.threads is not None:
        pydetect.set_num_threads(check_num_threads(args.threads, "--threads"))
    return args.func(args)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.traceback:
        return _run(args)
    try:
        with _quiet_native_stderr():
            return _run(args)
    except KeyboardInterrupt:
        print("pydetect: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line: see _BAD_INPUT
        print(f"pydetect: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, _BAD_INPUT) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
