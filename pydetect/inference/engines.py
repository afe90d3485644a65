"""Engines that run one model over many images and hand back one record per image.

A :class:`Job` says what to do with an image (model file, tiling, score threshold, drawing);
an :class:`ImagePredictor`, built once per worker from the job, turns a task
``{"id", "file_name", "annotated"}`` into a record::

    {"id", "file_name", "annotated", "detections": n, "results": [COCO results entries]}
    {"id", "file_name", "annotated", "error": "ValueError: cannot decode ..."}   # unreadable image

The engines yield these records as images finish:

- :func:`local_records` with ``workers=0``: in this process, a thread decoding up to
  ``prefetch`` images ahead of the detector (OpenCV's decoding and pydetect's kernels release
  the GIL, so they overlap);
- :func:`local_records` with ``workers=N``: N processes (spawned, each loading the model
  once), at most ``prefetch`` images in flight;
- :func:`ray_records`: Ray Data ``map_batches`` over the tasks with the predictor as a
  stateful actor class, ``workers`` actors, on the cluster ``ray.init`` connects to.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

import cv2

import pydetect
from pydetect._io import atomic_write
from pydetect.cascade import Cascade, CascadeDetector
from pydetect.detectors import BaseDetector
from pydetect.inference.sources import open_image
from pydetect.inference.tiled import batch_predictor, predict_tiled
from pydetect.viz import draw_detections

__all__ = ["Job", "ImagePredictor", "load_model", "local_records", "ray_records"]


@dataclasses.dataclass(frozen=True)
class Job:
    """What a worker does with each image (picklable: it travels to worker processes and actors).

    model : path of a saved detector (``Detector.save``) or of an OpenCV cascade XML
    scale_factor, min_neighbors : used for a cascade XML only
    tiling : keyword arguments of :func:`pydetect.inference.predict_tiled`, or None for one
        prediction on the whole image
    score_threshold : detections scoring below are dropped (None: none is)
    out : directory of the annotated images, or None not to draw them
    """

    model: str
    scale_factor: float = 1.1
    min_neighbors: int = 3
    tiling: dict | None = None
    score_threshold: float | None = None
    out: str | None = None


class _CascadePredictor:
    """An OpenCV cascade XML as a detector: ``predict(image)`` is ``CascadeDetector.detect``
    (scores are the neighbour counts)."""

    def __init__(self, path, scale_factor, min_neighbors):
        self._detector = CascadeDetector(Cascade.load(path))
        self._params = {"scale_factor": scale_factor, "min_neighbors": min_neighbors}

    def predict(self, image):
        return self._detector.detect(image, **self._params)


def load_model(path, scale_factor: float = 1.1, min_neighbors: int = 3):
    """``(detector, class_names)`` from a saved detector or, for a ``.xml`` path, a cascade.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file, or one that is neither (the message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.lower().endswith(".xml"):
        return _CascadePredictor(path, scale_factor, min_neighbors), [os.path.splitext(os.path.basename(path))[0]]
    model = BaseDetector.load(path)
    return model, getattr(model, "class_names_", None)


def _error_record(task, exc) -> dict:
    return {**task, "error": f"{type(exc).__name__}: {exc}"}


class ImagePredictor:
    """Turns tasks into records for one :class:`Job`; loads the model once, when built."""

    def __init__(self, job: Job):
        self.job = job
        self.detector, self.class_names = load_model(job.model, job.scale_factor, job.min_neighbors)
        self._predict = batch_predictor(self.detector)

    def load(self, task):
        """The decoded image; with tiling, the path itself (predict_tiled reads it lazily)."""
        if self.job.tiling is not None:
            return task["file_name"]
        source = open_image(task["file_name"])
        try:
            return source.read(0, 0, source.size[1], source.size[0])
        finally:
            source.close()

    def detect(self, task, image) -> dict:
        """The record of a task whose image :meth:`load` gave; unreadable images give an error record."""
        try:
            if self.job.tiling is not None:
                dets = predict_tiled(self.detector, image, **self.job.tiling)
            else:
                dets = self._predict([image])[0]
            if self.job.score_threshold is not None:
                dets = dets[dets.scores >= self.job.score_threshold]
            if self.job.out is not None:
                self._draw(image, dets, os.path.join(self.job.out, task["annotated"]))
        except (OSError, ValueError) as exc:
            return _error_record(task, exc)
        return {**task, "detections": len(dets), "results": dets.to_coco(task["id"])}

    def __call__(self, task) -> dict:
        try:
            image = self.load(task)
        except (OSError, ValueError) as exc:
            return _error_record(task, exc)
        return self.detect(task, image)

    def _draw(self, image, dets, path):
        drawn = draw_detections(image, dets, self.class_names)
        ok, png = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR) if drawn.ndim == 3 else drawn)
        if not ok:
            raise ValueError(f"{path}: could not encode the annotated image")
        with atomic_write(path, "wb") as f:
            f.write(png.tobytes())


def _set_threads(n: int) -> None:
    """n threads for pydetect's kernels (and torch's, if loaded), so that workers sharing the
    cores do not oversubscribe them."""
    pydetect.set_num_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# Local engine ------------------------------------------------------------------------------
_WORKER_PREDICTOR = None


def _init_worker(job, threads):
    global _WORKER_PREDICTOR
    _WORKER_PREDICTOR = ImagePredictor(job)
    _set_threads(threads)


def _work(task):
    return _WORKER_PREDICTOR(task)


def _load_or_error(predictor, task):
    try:
        return predictor.load(task), None
    except (OSError, ValueError) as exc:
        return None, exc


def local_records(job: Job, tasks, workers: int = 0, prefetch: int | None = None):
    """Records of ``tasks``: in this process (``workers=0``, in task order) or in ``workers``
    spawned processes (in completion order); ``prefetch`` images in flight (default
    ``2 * max(1, workers)``)."""
    prefetch = prefetch or 2 * max(1, workers)
    tasks = iter(tasks)
    if workers == 0:
        predictor = ImagePredictor(job)
        with ThreadPoolExecutor(1, thread_name_prefix="pydetect-reader") as reader:
            window = collections.deque()
            for task in tasks:
                window.append((task, reader.submit(_load_or_error, predictor, task)))
                if len(window) >= prefetch:
                    yield _detected(predictor, *window.popleft())
            while window:
                yield _detected(predictor, *window.popleft())
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: a forked child of a process that ran torch or OpenMP can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(job, threads)) as pool:
        pending = set()
        while True:
            for task in tasks:
                pending.add(pool.submit(_work, task))
                if len(pending) >= prefetch:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


def _detected(predictor, task, future):
    image, exc = future.result()
    return _error_record(task, exc) if exc is not None else predictor.detect(task, image)


# Ray engine --------------------------------------------------------------------------------
class _RayPredictor:
    """The stateful callable class of ``map_batches``: one model per actor."""

    def __init__(self, job):
        self._predictor = ImagePredictor(job)
        _set_threads(1)

    def __call__(self, batch):
        records = [self._predictor({"id": int(i), "file_name": str(f), "annotated": str(a) or None})
                   for i, f, a in zip(batch["id"], batch["file_name"], batch["annotated"])]
        return {"record": [json.dumps(r) for r in records]}


def ray_records(job: Job, tasks, workers: int = 1, address=None):
    """Records of ``tasks`` computed by ``workers`` Ray actors (one CPU each), in completion order.

    Connects with ``ray.init(address=address)`` unless Ray is already initialised; without an
    address Ray uses ``RAY_ADDRESS`` if set, else starts a local cluster. The image paths and
    ``job.out`` must be readable (writable) on every node: a shared file system.
    """
    try:
        import ray  # deferred: ray is an optional extra (pydetect[ray])
    except ImportError:
        raise ValueError("engine='ray' needs the ray package: pip install 'pydetect[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # detect_folder shows its own
    items = [{"id": t["id"], "file_name": t["file_name"], "annotated": t["annotated"] or ""} for t in tasks]
    if not items:
        return
    dataset = ray.data.from_items(items).map_batches(
        _RayPredictor, fn_constructor_args=(job,), batch_size=1, num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, workers)))
    for row in dataset.iter_rows():
        yield json.loads(row["record"])
