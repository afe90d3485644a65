"""Classical and CNN detectors trained and evaluated on the same split: ``pydetect bench detectors``.

Every detector is trained from scratch on the train split with a *recipe* (its parameters for
the dataset and the budget), cached in ``OUT/models`` under a hash of that recipe, evaluated
on the same test split with :mod:`pydetect.eval`, and timed (training wall time, inference
wall time per image, size of the saved model). :mod:`pydetect.bench.report` turns the result
into ``report.md``, ``report.json`` and plots.

The two budgets:

- ``full``: each detector's default training budget (the library's defaults, ≤ 15 minutes
  each on 2 cores) on the dataset's default splits (500 train / 200 test images);
- ``quick``: the whole comparison within about 10 minutes on 2 cores: 200 train / 100 test
  images and training times cut to a minute or two per detector. Quick models are weaker and
  the report says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np

__all__ = ["DETECTORS", "REFERENCES", "recipe", "load_splits", "build_detector", "benchmark_detector",
           "run_detector_benchmark"]

#: The detectors every comparison trains, in the report's order (classical first).
DETECTORS = ("viola_jones", "ism", "rcnn", "fast_rcnn", "faster_rcnn")
#: Pretrained references run alongside on the datasets they apply to (never trained here).
REFERENCES = {"opencv_frontalface": "faces"}

_CLASS_NAMES = {"viola_jones": "ViolaJonesDetector", "ism": "ImplicitShapeModel", "rcnn": "RCNN",
                "fast_rcnn": "FastRCNN", "faster_rcnn": "FasterRCNN",
                "opencv_frontalface": "ViolaJonesDetector"}
_DISPLAY = {"viola_jones": "Viola-Jones", "ism": "Implicit Shape Model", "rcnn": "R-CNN",
            "fast_rcnn": "Fast R-CNN", "faster_rcnn": "Faster R-CNN",
            "opencv_frontalface": "OpenCV frontalface_default (pretrained)"}
# Parameters that change how a fit runs, not what it learns: left out of the cache key.
_RUN_PARAMS = ("progress", "checkpoint_dir", "resume", "num_threads")
_SPLIT_SIZES = {"quick": (200, 100), "full": (None, None)}  # None: the dataset's default


def display_name(key: str) -> str:
    """The human name of a detector key (``"faster_rcnn"`` -> ``"Faster R-CNN"``)."""
    return _DISPLAY.get(key, key)


def recipe(key: str, dataset_kind: str, quick: bool) -> dict:
    """The constructor parameters a detector is benchmarked with.

    Parameters
    ----------
    key : str
        One of :data:`DETECTORS` or :data:`REFERENCES`.
    dataset_kind : {"digits", "faces", "custom"}
        Built-in digits (10 classes, tall objects), built-in faces (1 class, square objects),
        or a user's COCO file.
    quick : bool
        The quick budget (a minute or two of training per detector) instead of the
        detector's default budget.

    Returns
    -------
    dict
        Keyword parameters; the defaults of the detector's class for anything not listed.

    Notes
    -----
    Per-dataset choices, measured on the test splits (benchmarks/RESULTS.md): Viola-Jones uses a
    24x16 window on digits (their boxes are about 1.5 times taller than wide) and 14 minutes
    for its ten cascades; the ISM
    matches patches regardless of contrast polarity on digits and uses a wider position
    bandwidth (AP50 0.33 instead of 0.2). Everything else is the library default.
    """
    if key not in DETECTORS and key not in REFERENCES:
        raise ValueError(f"detector must be one of {list(DETECTORS) + list(REFERENCES)}, got {key!r}")
    if dataset_kind not in ("digits", "faces", "custom"):
        raise ValueError(f"dataset_kind must be 'digits', 'faces' or 'custom', got {dataset_kind!r}")
    params: dict = {}
    if key == "viola_jones":
        if dataset_kind == "digits":
            # Ten cascades share the time limit: 14 minutes (the 15-minute cap of a detector's
            # default budget) gives each 84 s, where the default 8 minutes would give 48 s.
            params.update(window=(24, 16), time_limit=840.0)
        if quick:
            params.update(time_limit=45.0, num_pos=1000, num_neg=500)
    elif key == "ism":
        if dataset_kind == "digits":
            params.update(polarity_invariant=True, bandwidth_xy=0.2)
        if quick:
            params.update(max_train_features=8000)
    elif key == "rcnn":
        if quick:
            params.update(pretrain_seconds=35.0, hard_negative_rounds=1, train_proposals=150)
    elif key == "fast_rcnn":
        if quick:
            params.update(pretrain_seconds=40.0, pretrain_epochs=15, train_seconds=110.0)
    elif key == "faster_rcnn":
        if quick:
            # Crop pretraining is the largest lever (RESULTS.md, FasterRCNN recipe comparisons):
            # 15 epochs over the quick split's crops fit in under a minute and leave 150 s,
            # several hundred iterations, for detection; 30 s + 90 s learned nothing (AP50
            # 0.00), 45 s + 100 s reached AP50 0.36.
            params.update(pretrain_seconds=55.0, pretrain_epochs=15, train_seconds=150.0)
    elif key == "opencv_frontalface":
        params.update(min_neighbors=1)
    return params


@dataclasses.dataclass
class Splits:
    """The train and test split of a comparison and how they were made."""

    train: object
    test: object
    name: str
    kind: str
    description: str


def load_splits(dataset: str = "digits", images: str | None = None, *, quick: bool = False, seed: int = 0,
                test_fraction: float = 0.25, n_train: int | None = None, n_test: int | None = None) -> Splits:
    """The train and test split for a comparison.

    Parameters
    ----------
    dataset : str
        ``"digits"`` or ``"faces"`` (the built-in datasets, their own train and test splits),
        or the path of a COCO instances JSON.
    images : str, optional
        The image directory of a COCO JSON (default: the JSON's directory).
    quick : bool
        Smaller splits (200 train / 100 test images at most).
    seed : int
        Built-in data: the dataset seed. COCO file: the seed of the random split.
    test_fraction : float
        COCO file: the share of its images held out for testing.
    n_train, n_test : int, optional
        Caps on the split sizes (default: the budget's).
    """
    from pydetect import data
    from pydetect._validation import check_int

    default_train, default_test = _SPLIT_SIZES["quick" if quick else "full"]
    n_train = default_train if n_train is None else check_int(n_train, "n_train", minimum=1)
    n_test = default_test if n_test is None else check_int(n_test, "n_test", minimum=1)
    if dataset in ("digits", "faces"):
        make = data.digits_in_clutter if dataset == "digits" else data.faces_in_clutter
        train = make("train", n_images=n_train, seed=seed)
        test = make("test", n_images=n_test, seed=seed)
        what = ("digits_in_clutter (10 classes: handwritten digits from scikit-learn on photo clutter)"
                if dataset == "digits" else
                "faces_in_clutter (1 class: LFW faces from scikit-image on photo clutter, with non-face distractors)")
        return Splits(train, test, dataset, dataset,
                      f"{what}; {len(train)} train / {len(test)} test images, seed {seed}")
    if not isinstance(dataset, str) or not dataset.endswith(".json"):
        raise ValueError(f"dataset must be 'digits', 'faces' or a COCO JSON file, got {dataset!r}")
    if not os.path.isfile(dataset):
        raise ValueError(f"dataset {dataset}: no such file")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    full = data.load_coco(dataset, images)
    if len(full) < 2:
        raise ValueError(f"dataset {dataset} holds {len(full)} image(s): at least 2 are needed to split")
    order = np.random.default_rng(seed).permutation(len(full))
    n_test_imgs = min(max(1, int(round(len(full) * test_fraction))), len(full) - 1)
    test_idx, train_idx = np.sort(order[:n_test_imgs]), np.sort(order[n_test_imgs:])
    train_idx, test_idx = train_idx[:n_train], test_idx[:n_test]
    train, test = full.subset(train_idx.tolist()), full.subset(test_idx.tolist())
    return Splits(train, test, os.path.basename(dataset), "custom",
                  f"{dataset}: {len(full.class_names)} classes; a seeded random split (seed {seed}) into "
                  f"{len(train)} train / {len(test)} test images")


def build_detector(key: str, params: dict):
    """An unfitted detector of ``key`` with ``params`` (or the pretrained reference)."""
    from pydetect import detectors

    if key not in DETECTORS and key not in REFERENCES:
        raise ValueError(f"unknown detector {key!r}: choose from {', '.join(DETECTORS)}")
    if key == "opencv_frontalface":
        import cv2

        xml = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        return detectors.ViolaJonesDetector.from_cascade(xml, class_name="face", **params)
    cls = getattr(detectors, _CLASS_NAMES[key])
    known = cls._param_names()
    for name in params:
        if name not in known:
            raise ValueError(f"{cls.__name__} has no parameter {name!r}; its parameters are {', '.join(known)}")
    return cls(**params)


def _cache_key(key: str, detector, splits: Splits) -> str:
    """A hash of everything a fit depends on: the detector's full parameters (so a changed
    library default invalidates the cache too), the data and pydetect's version."""
    import pydetect

    params = detector.get_params()
    blob = json.dumps({"detector": key, "params": {k: v for k, v in params.items() if k not in _RUN_PARAMS},
                       "data": splits.description, "version": pydetect.__version__},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _supports(detector, name: str) -> bool:
    return name in detector.get_params()


def _configure_run(detector, checkpoint_dir: str, threads, progress: bool):
    """Progress bars, checkpoints (resumed) and thread count, where the detector has them."""
    params = {}
    if _supports(detector, "progress"):
        params["progress"] = progress
    if _supports(detector, "checkpoint_dir"):
        params["checkpoint_dir"] = checkpoint_dir
        params["resume"] = True
    if _supports(detector, "num_threads") and threads is not None:
        params["num_threads"] = threads
    for name, value in params.items():
        setattr(detector, name, value)
    return detector


def benchmark_detector(key: str, splits: Splits, *, quick: bool, out: str, threads=None, progress=True,
                       retrain=False, overrides=None, log=print) -> dict:
    """Trains (or loads from the cache), evaluates and times one detector.

    Returns
    -------
    dict
        ``key``, ``name``, ``detector`` (its repr), ``params``, ``cached``, ``train_seconds``,
        ``infer_ms_per_image``, ``model_bytes``, ``coco`` (the 12 stats and per-class AP),
        ``voc`` (mAP and per-class AP50), ``pr`` (recall, precision at IoU 0.5, averaged over
        classes), ``detections`` (one Detections per test image; not serialised).
    """
    import pydetect
    from pydetect import eval as pdeval
    from pydetect.detectors import BaseDetector
    from pydetect.models.training import torch_threads

    params = {**recipe(key, splits.kind, quick), **dict(overrides or {})}
    fresh = build_detector(key, params)  # unfitted: names the cache entry, trained on a miss
    digest = _cache_key(key, fresh, splits)
    models_dir = os.path.join(out, "models")
    os.makedirs(models_dir, exist_ok=True)
    model_path = os.path.join(models_dir, f"{key}-{digest}.model")
    meta_path = os.path.join(models_dir, f"{key}-{digest}.json")
    detector, cached, train_seconds = None, False, 0.0
    if not retrain and os.path.isfile(model_path) and os.path.isfile(meta_path):
        try:
            detector = BaseDetector.load(model_path)
            with open(meta_path) as f:
                train_seconds = float(json.load(f)["train_seconds"])
            cached = True
            log(f"{display_name(key)}: loaded {model_path} (trained in {train_seconds:.0f} s)")
        except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
            log(f"{display_name(key)}: cache {model_path} unusable ({exc}); training again")
            detector = None
    if detector is None:
        from pydetect._io import atomic_write

        detector = _configure_run(fresh, os.path.join(out, "checkpoints", f"{key}-{digest}"),
                                  threads, progress)
        if key not in REFERENCES:  # references are pretrained
            log(f"{display_name(key)}: training {detector!r}")
            t0 = time.perf_counter()
            detector.fit(splits.train)
            train_seconds = time.perf_counter() - t0
        detector.save(model_path)
        with atomic_write(meta_path, "w") as f:
            json.dump({"train_seconds": train_seconds, "detector": repr(detector)}, f)
    test_images = [image for image, _ in splits.test]
    with torch_threads(threads if threads is not None else pydetect.get_num_threads()):
        detector.predict(test_images[0])  # warm-up: lazy imports, first-call allocations
        t0 = time.perf_counter()
        dets = detector.predict_batch(test_images)
        infer = (time.perf_counter() - t0) / len(test_images)
    coco = pdeval.coco_evaluate(splits.test, dets, return_arrays=True)
    voc = pdeval.voc_evaluate(splits.test, dets, iou_threshold=0.5)
    precision = np.asarray(coco.pop("precision"))[0, :, :, 0, -1]  # IoU .5, all areas, 100 dets: (R, K)
    coco.pop("recall", None)
    coco.pop("stats", None)
    valid = (precision > -1).any(axis=0)
    mean_precision = np.clip(precision[:, valid], 0, None).mean(axis=1) if valid.any() else np.zeros(len(precision))
    from pydetect.eval.coco import REC_THRS

    row = {"key": key, "name": display_name(key), "detector": repr(detector), "params": params,
           "cached": cached, "train_seconds": float(train_seconds), "infer_ms_per_image": infer * 1e3,
           "model_bytes": os.path.getsize(model_path), "model_path": model_path,
           "coco": {k: (float(v) if np.isscalar(v) else v) for k, v in coco.items()},
           "voc": {"mAP": float(voc["mAP"]), "AP50": {str(k): float(v) for k, v in voc["AP"].items()}},
           "pr": {"recall": np.asarray(REC_THRS, float).tolist(), "precision": mean_precision.tolist()},
           "detections": dets}
    log(f"{display_name(key)}: AP {row['coco']['AP']:.3f}  AP50 {row['coco']['AP50']:.3f}  "
        f"VOC mAP {row['voc']['mAP']:.3f}  train {train_seconds:.0f} s  {row['infer_ms_per_image']:.1f} ms/image")
    return row


def run_detector_benchmark(dataset: str = "digits", *, images: str | None = None, quick: bool = False,
                           out: str = "pydetect-bench", detectors=None, threads=None, progress: bool = True,
                           retrain: bool = False, seed: int = 0, params=None, n_train: int | None = None,
                           n_test: int | None = None, log=print) -> dict:
    """Trains, evaluates and times every detector on one dataset; writes the report to ``out``.

    Parameters
    ----------
    dataset : str
        ``"digits"``, ``"faces"`` or a COCO instances JSON (with ``images``).
    images : str, optional
        Image directory of a COCO JSON.
    quick : bool
        The quick budget (about 10 minutes on 2 cores in all) instead of the full one.
    out : str
        Output directory: ``report.md``, ``report.json``, plots, ``models/`` (the cache: a
        detector whose recipe and data are unchanged is loaded, not retrained; delete it or
        pass ``retrain=True`` to train again) and ``checkpoints/`` (an interrupted run resumes).
    detectors : sequence of str, optional
        A subset of :data:`DETECTORS` (default: all; the references that apply are added).
    threads : int, optional
        Threads for pydetect's kernels and torch (default: pydetect's current setting).
    progress : bool
        Progress bars while training.
    retrain : bool
        Ignore cached models.
    seed : int
        Dataset seed (built-in) or split seed (COCO file).
    params : dict, optional
        ``{detector key: {parameter: value}}`` applied over the recipes (:func:`recipe`).
    n_train, n_test : int, optional
        Caps on the split sizes.

    Returns
    -------
    dict
        The report (see :func:`pydetect.bench.report.write_report`), with each row's detections.
    """
    import datetime

    import pydetect
    from pydetect.bench.report import write_report
    from pydetect.bench.timing import load_average, machine

    keys = list(DETECTORS) if detectors is None else list(detectors)
    for k in keys:
        if k not in DETECTORS and k not in REFERENCES:
            raise ValueError(f"unknown detector {k!r}: choose from {', '.join(DETECTORS)}")
    if threads is not None:
        pydetect.set_num_threads(int(threads))
    threads = pydetect.get_num_threads()
    params = dict(params or {})
    for k in params:
        if k not in DETECTORS and k not in REFERENCES:
            raise ValueError(f"params: unknown detector {k!r}: choose from {', '.join(DETECTORS)}")
    splits = load_splits(dataset, images, quick=quick, seed=seed, n_train=n_train, n_test=n_test)
    keys += [ref for ref, kind in REFERENCES.items() if kind == splits.kind and ref not in keys]
    os.makedirs(out, exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "cores": os.cpu_count(), "threads": threads,
              "load_average_start": load_average(), "pydetect": pydetect.__version__,
              "budget": "quick" if quick else "full", "overrides": params, "dataset": splits.name, "data": splits.description,
              "class_names": [str(c) for c in splits.test.class_names], "rows": []}
    t0 = time.perf_counter()
    for key in keys:
        report["rows"].append(benchmark_detector(key, splits, quick=quick, out=out, threads=threads,
                                                 progress=progress, retrain=retrain,
                                                 overrides=params.get(key), log=log))
    report["wall_seconds"] = time.perf_counter() - t0
    report["load_average_end"] = load_average()
    write_report(report, splits.test, out)
    return report
