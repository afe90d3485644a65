"""Streaming detection over any number of images, with incremental, resumable outputs.

:func:`detect_folder` writes into ``out``:

``run.json``
    The run's settings and its images with their ids (an image's id is its position in the
    first run's input list, from 1; images added later get the next ids). Written atomically;
    a later run into the same directory must use the same settings.
``results.jsonl``
    One JSON line per finished image, appended (and flushed) as images finish, in completion
    order: ``{"id", "file_name", "annotated", "detections", "results": [COCO results]}`` or,
    for an image that could not be read, ``{"id", "file_name", "annotated", "error"}``.
    This log is what a resumed run reads: its images are not run again (failed ones are
    retried); a line cut short by a kill is dropped.
``images.json``
    The index of the finished images (``id``, ``file_name``, ``annotated``, ``detections``
    or ``error``) by id, atomically replaced every few seconds and at the end.
``results.json``
    At the end: the COCO results of all the input images, by image id (the same file
    whatever the engine, the number of workers and the interruptions).
``<name>.png``
    With ``draw=True``: each image with its detections drawn.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time

from tqdm.auto import tqdm

from pydetect._io import atomic_write
from pydetect._validation import check_bool, check_choice, check_fraction, check_int, check_real, check_scale_factor
from pydetect.inference.engines import Job, load_model, local_records, ray_records
from pydetect.inference.merge import merge_detections
from pydetect.inference.tiling import check_tiling
from pydetect.structures import Detections

__all__ = ["detect_folder", "expand_inputs", "IMAGE_EXTENSIONS", "ENGINES"]

#: Files a directory input contributes (by extension, case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                    ".pnm", ".jp2", ".npy")
ENGINES = ("local", "ray")


def expand_inputs(inputs) -> list:
    """Absolute paths of the images named by ``inputs``.

    Parameters
    ----------
    inputs : path or sequence of paths
        Each one a directory (its files with an :data:`IMAGE_EXTENSIONS` extension, sorted by
        name, not recursive), an existing file (taken as is), or a glob pattern (its matches,
        sorted; ``**`` recurses).

    Returns
    -------
    list of str
        In the order given, each path once.

    Raises
    ------
    FileNotFoundError
        An input that is neither a file nor a directory and matches nothing, or a
        directory without image files.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, n)))
            if not found:  # named explicitly, so an empty folder is a mistake, not an empty run
                raise FileNotFoundError(f"{item} is a directory with no image files "
                                        f"({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"no image file matches {item}")
        paths.extend(os.path.abspath(p) for p in found)
    return list(dict.fromkeys(paths))


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plan(path, settings: dict, paths: list) -> dict:
    """The run's images ``{file_name: {"id", "file_name", "annotated"}}``: those of a previous
    run into the same directory (which must have had the same settings) and the new ones."""
    images = {}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous.get("settings") != settings:
            changed = sorted(k for k in set(settings) | set(previous.get("settings", {}))
                             if settings.get(k) != previous.get("settings", {}).get(k))
            raise ValueError(f"{path} records a run with other settings ({', '.join(changed)}): write to "
                             "another output directory, or delete it to start over")
        images = {im["file_name"]: im for im in previous["images"]}
    names = {im["annotated"] for im in images.values()}
    next_id = max((im["id"] for im in images.values()), default=0) + 1
    added = False
    for p in paths:
        if p in images:
            continue
        name = os.path.splitext(os.path.basename(p))[0] + ".png"
        if name in names:
            name = f"{name[:-4]}_{next_id}.png"
        names.add(name)
        images[p] = {"id": next_id, "file_name": p, "annotated": name}
        next_id += 1
        added = True
    if added or not os.path.exists(path):
        with atomic_write(path, "w") as f:
            json.dump({"settings": settings, "images": list(images.values())}, f, indent=1)
    return images


def _scan_log(path):
    """Finished images of the log: ``{id: (offset, length, n_detections)}`` and
    ``{id: error}`` (a later success clears an error; a later duplicate is ignored). A last
    line without its newline (a kill in mid-write) is cut off the file."""
    done, failed = {}, {}
    if not os.path.exists(path):
        return done, failed
    with open(path, "r+b") as f:
        offset = 0
        for line in f:
            if not line.endswith(b"\n"):
                f.truncate(offset)
                break
            try:
                record = json.loads(line)
                image_id = record["id"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}: the line at byte {offset} is not a result record; delete the "
                                 "output directory to start over") from None
            if "error" in record:
                if image_id not in done:
                    failed[image_id] = record["error"]
            elif image_id not in done:
                done[image_id] = (offset, len(line), record["detections"])
                failed.pop(image_id, None)
            offset += len(line)
    return done, failed


def _write_index(path, images, done, failed) -> None:
    listing = []
    for im in sorted(images, key=lambda im: im["id"]):
        if im["id"] in done:
            listing.append({**im, "detections": done[im["id"]][2]})
        elif im["id"] in failed:
            listing.append({**im, "error": failed[im["id"]]})
    with atomic_write(path, "w") as f:
        json.dump(listing, f, indent=1)


def _write_results(path, log_path, ids, done) -> None:
    """The COCO results of ``ids`` by id, copied from the log one record at a time."""
    with open(log_path, "rb") as log, atomic_write(path, "w") as f:
        f.write("[")
        first = True
        for image_id in sorted(ids):
            offset, length, _ = done[image_id]
            log.seek(offset)
            for entry in json.loads(log.read(length))["results"]:
                f.write(("" if first else ", ") + json.dumps(entry))
                first = False
        f.write("]")


def detect_folder(model, inputs, out, *, workers: int = 0, prefetch=None, engine: str = "local",
                  ray_address=None, tile=None, overlap: float = 0.2, merge: str = "greedy", iou: float = 0.5,
                  match=None, full_image_pass: bool = False, full_image_size=None,
                  score_threshold=None, scale_factor: float = 1.1, min_neighbors: int = 3,
                  draw: bool = False, progress: bool = True) -> dict:
    """Runs a saved model over any number of images, writing COCO results as it goes.

    A run killed midway resumes when started again with the same arguments: the images
    already in ``out/results.jsonl`` are not run again, and ``out/results.json`` lists each
    image once. See the module docstring for the files written.

    Parameters
    ----------
    model : path
        A detector saved with ``Detector.save``, or an OpenCV cascade XML (``.xml``).
    inputs : path or sequence of paths
        Directories, files or glob patterns (:func:`expand_inputs`).
    out : path
        Output directory.
    workers : int, default 0
        Worker processes, each loading the model once; 0 runs in this process (with a thread
        decoding images ahead). With ``engine="ray"``: the number of Ray actors.
    prefetch : int, optional
        Images in flight (decoded ahead or queued to the workers). Default ``2 * max(1, workers)``.
    engine : {"local", "ray"}, default "local"
        ``"ray"``: Ray Data ``map_batches`` with the model in stateful actors
        (:func:`pydetect.inference.engines.ray_records`); needs ``pip install 'pydetect[ray]'``.
    ray_address : str, optional
        Cluster to connect to (``ray.init(address=...)``); default ``RAY_ADDRESS``, else a local one.
    tile : int or (int, int), optional
        Run :func:`pydetect.inference.predict_tiled` with this tile size and ``overlap``, ``merge``,
        ``iou``, ``match``, ``full_image_pass``, ``full_image_size`` (see there); default: one
        prediction on the whole image.
    score_threshold : float, optional
        Detections scoring below are not written (default: all are).
    scale_factor, min_neighbors
        For a cascade XML model.
    draw : bool, default False
        Also write each image with its detections drawn, as ``out/<name>.png`` (not with
        ``tile``: drawing needs the whole image in memory).
    progress : bool, default True
        A progress bar (tqdm) on stderr when stderr is a terminal (none in logs and pipes,
        where it would only add lines).

    Returns
    -------
    dict
        ``images`` (number of inputs), ``done``, ``failed`` (``{file_name: error}``),
        ``detections``, ``seconds`` (this run), and the paths ``results``, ``log``, ``index``.

    Raises
    ------
    ValueError
        Bad arguments, a model file that cannot be loaded, or an ``out`` holding a run with
        other settings.

    Notes
    -----
    Worker processes are spawned, so they import the calling script's main module again: a
    script calling this with ``workers > 0`` needs the ``if __name__ == "__main__":`` guard.
    """
    start = time.perf_counter()
    workers = check_int(workers, "workers", minimum=0)
    prefetch = None if prefetch is None else check_int(prefetch, "prefetch", minimum=1)
    check_choice(engine, "engine", ENGINES)
    score_threshold = None if score_threshold is None else check_real(score_threshold, "score_threshold")
    scale_factor = check_scale_factor(scale_factor)
    min_neighbors = check_int(min_neighbors, "min_neighbors", minimum=0)
    draw = check_bool(draw, "draw")
    progress = check_bool(progress, "progress")
    tiling = None
    if tile is not None:
        if draw:
            raise ValueError("draw=True needs the whole image in memory, tile reads it by parts: use one or the other")
        tile, overlap = check_tiling(tile, overlap)
        merge_detections(Detections(), merge, iou, match)  # checks merge, iou and match now
        tiling = {"tile": list(tile), "overlap": overlap, "merge": merge, "iou": check_fraction(iou, "iou"),
                  "match": match, "full_image_pass": check_bool(full_image_pass, "full_image_pass"),
                  "full_image_size": None if full_image_size is None
                  else check_int(full_image_size, "full_image_size", minimum=1)}
    model = os.path.abspath(os.fspath(model))
    load_model(model, scale_factor, min_neighbors)  # a model that cannot load fails here, not in a worker
    paths = expand_inputs(inputs)
    out = os.path.abspath(os.fspath(out))
    os.makedirs(out, exist_ok=True)
    settings = {"model": model, "model_sha256": _sha256(model), "tiling": tiling,
                "score_threshold": score_threshold, "scale_factor": scale_factor, "min_neighbors": min_neighbors}
    plan = _plan(os.path.join(out, "run.json"), settings, paths)
    images = [plan[p] for p in paths]
    if draw:
        clash = [im["file_name"] for im in images if os.path.join(out, im["annotated"]) in plan]
        if clash:
            raise ValueError(f"out={out!r} holds input images that their annotated copies would overwrite "
                             f"({clash[0]}): choose another output directory")
    log_path, index_path = os.path.join(out, "results.jsonl"), os.path.join(out, "images.json")
    done, failed = _scan_log(log_path)
    todo = [im for im in images if im["id"] not in done]
    job = Job(model, scale_factor, min_neighbors, tiling, score_threshold, out if draw else None)
    if not todo:
        records = iter(())
    elif engine == "ray":
        records = ray_records(job, todo, workers, ray_address)
    else:
        records = local_records(job, todo, workers, prefetch)
    last_index, index_cost = time.perf_counter(), 0.0
    with open(log_path, "ab") as log, tqdm(total=len(images), initial=len(images) - len(todo), unit="img",
                                           disable=None if progress else True, desc="detect") as bar:
        for record in records:
            offset = log.tell()
            line = (json.dumps(record) + "\n").encode()
            log.write(line)
            log.flush()
            if "error" in record:
                failed[record["id"]] = record["error"]
            else:
                done[record["id"]] = (offset, len(line), record["detections"])
                failed.pop(record["id"], None)
            bar.update(1)
            # The index is rewritten every few seconds, and never for more than ~5% of the time.
            now = time.perf_counter()
            if now - last_index > max(2.0, 20 * index_cost):
                _write_index(index_path, images, done, failed)
                index_cost, last_index = time.perf_counter() - now, time.perf_counter()
    _write_index(index_path, images, done, failed)
    finished = [im["id"] for im in images if im["id"] in done]
    results_path = os.path.join(out, "results.json")
    _write_results(results_path, log_path, finished, done)
    return {"images": len(images), "done": len(finished),
            "failed": {im["file_name"]: failed[im["id"]] for im in images if im["id"] in failed},
            "detections": sum(done[i][2] for i in finished), "seconds": time.perf_counter() - start,
            "results": results_path, "log": log_path, "index": index_path}
