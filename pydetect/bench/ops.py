"""pydetect's ops against the peer libraries that are installed: ``pydetect bench ops``.

Each op family has one function that builds its input once (generated, or from data shipped
with scikit-image / OpenCV: nothing is downloaded), then times pydetect and every installed
peer on that input, interleaved call by call at the same thread count
(:func:`pydetect.bench.timing.time_alternating`: warm-up, then the median of the repeats),
and checks that the results agree where the two compute the same thing (NMS keep lists,
integral images, cascade boxes, Haar feature values, COCO stats, ...). A disagreement is
reported in the ``agree`` column, it does not stop the run; neither does an error in one
family (it is listed in :attr:`OpReport.errors`).

Peers are imported lazily; one that is not importable is named in :attr:`OpReport.missing`
with the pip package that provides it and the families it would have covered.

Families
--------
``boxes``
    nms, batched_nms, box_iou vs torchvision.ops, nms vs ``cv2.dnn.NMSBoxes``.
``integral``
    integral_image (sum, +squared, +tilted) vs ``cv2.integral``/``integral2``/``integral3``
    and ``skimage.transform.integral_image``, and its effective bandwidth next to copies of as
    many bytes (``np.copyto`` into a preallocated array, a copy into a new one); 640x480 in
    quick mode, also 1920x1080 and 4096x4096 in full mode.
``cascade``
    CascadeDetector vs ``cv2.CascadeClassifier.detectMultiScale`` (Haar frontal face of
    ``cv2.data.haarcascades``, scikit-image's LBP face cascade) and ``skimage.feature.Cascade``.
``haar``
    HaarFeatures(mode="skimage") vs ``skimage.feature.haar_like_feature`` on LFW windows.
``boosting``
    AdaBoost of stumps vs ``sklearn.ensemble.AdaBoostClassifier`` on those Haar features.
``proposals``
    selective_search vs ``cv2.ximgproc`` (opencv-contrib) and the ``selectivesearch``
    package; felzenszwalb vs ``skimage.segmentation.felzenszwalb``.
``roi``
    roi_align / roi_pool forward and backward vs torchvision.ops on each RoI input class of
    :data:`ROI_CASES` (boxes inside the map, outside, partly outside, tiny, huge; aligned
    False / True; fixed and adaptive sampling).
``eval``
    coco_evaluate vs pycocotools' COCOeval (and faster-coco-eval when installed).
``ism``
    Hough-vote mean-shift (fixed bandwidth) vs ``sklearn.cluster.MeanShift``.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np
import torch
from skimage import data as skdata
from skimage.feature import Cascade as SkCascade
from skimage.feature import haar_like_feature
from skimage.segmentation import felzenszwalb as sk_felzenszwalb
from skimage.transform import integral_image as sk_integral_image
from skimage.transform import resize
from sklearn.cluster import MeanShift
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier

import pydetect
from pydetect import eval as pdeval
from pydetect import ops
from pydetect._io import atomic_write
from pydetect.bench.timing import load_average, machine, set_threads, time_alternating
from pydetect.cascade import AdaBoost, CascadeDetector, HaarFeatures
from pydetect.ism import accumulate_votes, mean_shift

__all__ = ["FAMILIES", "PEERS", "OpRow", "OpReport", "run_op_benchmarks"]


# ------------------------------------------------------------------------------ peers

#: Peer name -> (module to import, pip package that provides it, families it covers).
PEERS = {
    "torchvision": ("torchvision.ops", "torchvision", ("boxes", "roi")),
    "OpenCV": ("cv2", "opencv-python-headless", ("boxes", "integral", "cascade")),
    "OpenCV contrib": ("cv2.ximgproc", "opencv-contrib-python-headless", ("proposals",)),
    "scikit-image": ("skimage", "scikit-image", ("integral", "cascade", "haar", "proposals")),
    "scikit-learn": ("sklearn", "scikit-learn", ("boosting", "ism")),
    "pycocotools": ("pycocotools.cocoeval", "pycocotools", ("eval",)),
    "faster-coco-eval": ("faster_coco_eval", "faster-coco-eval", ("eval",)),
    "selectivesearch": ("selectivesearch", "selectivesearch", ("proposals",)),
}


@dataclass
class OpRow:
    """One comparison: pydetect and one peer on the same input at the same thread count.

    ``ours_ms`` / ``peer_ms`` are median milliseconds per call; ``ratio`` is
    ``ours_ms / peer_ms`` (below 1: pydetect is faster). ``agree`` is True / False where the
    two should compute the same result and None where they do not (different algorithms).
    """

    family: str
    case: str
    threads: int
    ours_ms: float
    peer: str | None = None
    peer_ms: float | None = None
    agree: bool | None = None
    repeats: int = 0
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.peer_ms is None or self.peer_ms <= 0:
            return None
        return self.ours_ms / self.peer_ms

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


@dataclass
class OpReport:
    """Result of :func:`run_op_benchmarks`.

    Attributes
    ----------
    rows : list of OpRow
    missing : dict
        Peer name -> ``{"package": pip package, "families": [families it would have
        covered in this run], "error": why the import failed}``.
    errors : dict
        Family -> "ExceptionType: message" for families that raised (the run went on).
    """

    rows: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    families: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    quick: bool = False
    repeats: int = 7
    machine: str = ""
    date: str = ""
    load_start: float | None = None
    load_end: float | None = None
    seconds: float = 0.0
    versions: dict = field(default_factory=dict)

    def markdown(self) -> str:
        """The report as markdown: a header line, the table, then missing peers and errors."""
        load = ""
        if self.load_start is not None:
            load = f"; load average {self.load_start:.1f} at start, {self.load_end:.1f} at end"
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items()))
        out = [f"### pydetect ops vs peers ({'quick' if self.quick else 'full'} mode, {self.date}; "
               f"{self.machine}{load}; {self.seconds:.0f} s)", "",
               "Median ms per call after a warm-up, pydetect and the peer interleaved in one "
               "process at the same thread count; ratio = pydetect / peer (below 1: pydetect "
               "faster); agree: same result (– where the two compute different things)."]
        if versions:
            out += ["", f"Versions: {versions}."]
        out += ["", "| family | case | threads | pydetect ms | peer | peer ms | ratio | agree | repeats | note |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            ratio = "–" if r.ratio is None else _fmt_ratio(r.ratio) + "×"
            agree = {True: "yes", False: "**NO**", None: "–"}[r.agree]
            peer_ms = "–" if r.peer_ms is None else _fmt_ms(r.peer_ms)
            out.append(f"| {r.family} | {r.case} | {r.threads} | {_fmt_ms(r.ours_ms)} | {r.peer or '–'} "
                       f"| {peer_ms} | {ratio} | {agree} | {r.repeats} | {r.note} |")
        if self.missing:
            out += ["", "Peers not installed (their comparisons were not run):", ""]
            for name, m in self.missing.items():
                out.append(f"- {name} (`pip install {m['package']}`): {', '.join(m['families'])} "
                           f"— {m['error']}")
        if self.errors:
            out += ["", "Families that failed:", ""]
            out += [f"- {fam}: {msg}" for fam, msg in self.errors.items()]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d["rows"] = [r.as_dict() for r in self.rows]
        return d

    def to_json(self, indent: int = 2) -> str:
        """The report as a JSON string (rows carry their ratio)."""
        return json.dumps(self.to_dict(), indent=indent)

    def write_json(self, path) -> None:
        """Writes :meth:`to_json` to ``path`` atomically (temporary file, then rename)."""
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")


def _version(package: str, module: str) -> str:
    dists = [package]
    if module.startswith("cv2"):  # any of OpenCV's four wheels provides cv2
        dists += ["opencv-python", "opencv-contrib-python", "opencv-python-headless",
                  "opencv-contrib-python-headless"]
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(sys.modules.get(module.split(".")[0]), "__version__", "?"))


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def _fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


class _Run:
    """State of one run: options, the lazy peer imports, and the rows collected."""

    def __init__(self, report: OpReport, quick: bool, threads: list, repeats: int, progress):
        self.report = report
        self.quick = quick
        self.threads = threads
        self.repeats = repeats
        self.progress = progress or (lambda *_: None)
        self._modules = {}
        self.family = ""

    def peer(self, name: str):
        """The peer's module, or None (then named in ``missing`` for the current family)."""
        if name not in self._modules:
            module, package, _ = PEERS[name]
            try:
                self._modules[name] = importlib.import_module(module)
                self.report.versions[name] = _version(package, module)
            except Exception as exc:  # a broken install is reported like a missing one
                self._modules[name] = None
                self.report.missing[name] = {"package": package, "families": [],
                                             "error": f"{type(exc).__name__}: {exc}"}
        if self._modules[name] is None:
            fams = self.report.missing[name]["families"]
            if self.family not in fams:
                fams.append(self.family)
                self.progress(f"  {name} not installed (pip install {self.report.missing[name]['package']}):"
                              f" its {self.family} comparisons are not run")
        return self._modules[name]

    def reps(self, slow: bool = False) -> int:
        """Repeats of a case; slow peers (seconds per call) get fewer."""
        return max(3, self.repeats // 2) if slow else self.repeats

    def timeit(self, fns: dict, slow: bool = False) -> tuple:
        """Median seconds of each callable (interleaved) and the number of timed rounds.

        Fast ops run for at least ``min_time`` (0.3 s quick, 1 s full) so that sub-millisecond
        medians rest on many calls; every callable is wrapped alike to count the rounds.
        """
        counts = dict.fromkeys(fns, 0)

        def counted(name, fn):
            def call():
                counts[name] += 1
                return fn()
            return call

        wrapped = {name: counted(name, fn) for name, fn in fns.items()}
        t = time_alternating(wrapped, repeats=self.reps(slow), min_time=0.3 if self.quick else 1.0)
        return t, min(counts.values()) - 1  # the first call is the warm-up

    def time(self, case: str, threads: int, ours, peers: dict, agree: dict | None = None,
             slow: bool = False, note: str = "", notes: dict | None = None) -> None:
        """Times ``ours`` interleaved with each peer callable in turn; adds one row per peer.

        Each pair is timed on its own: a third library in the same rounds changes what the
        allocator hands the next call (large freed buffers, fresh pages), which skewed
        megabyte-sized outputs such as integral images by 3x.
        """
        agree = agree or {}
        notes = notes or {}
        for name, fn in peers.items():
            t, reps = self.timeit({"pydetect": ours, name: fn}, slow)
            self.add(OpRow(self.family, case, threads, t["pydetect"] * 1e3, name, t[name] * 1e3,
                           agree.get(name), reps, notes.get(name, note)))
        if not peers:
            t, reps = self.timeit({"pydetect": ours}, slow)
            self.add(OpRow(self.family, case, threads, t["pydetect"] * 1e3, None, None, None, reps,
                           note or "no peer installed"))

    def add(self, row: OpRow) -> None:
        self.report.rows.append(row)
        ratio = "–" if row.ratio is None else _fmt_ratio(row.ratio) + "x"
        agree = {True: "agree", False: "DISAGREE", None: ""}[row.agree]
        peer = f"{row.peer} {_fmt_ms(row.peer_ms)} ms" if row.peer else "no peer"
        self.progress(f"  {row.case} [{row.threads} thr]: pydetect {_fmt_ms(row.ours_ms)} ms, {peer}, "
                      f"ratio {ratio} {agree}".rstrip())


# ------------------------------------------------------------------------- inputs


def clustered_boxes(n: int, seed: int = 0, num_classes: int = 1):
    """Detector-like boxes before NMS: jittered boxes around n / 25 centres in 2000 x 2000.

    Returns float32 (n, 4) xyxy boxes, float32 (n,) scores and int64 (n,) labels.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 2000, (max(1, n // 25), 2))
    sizes = rng.uniform(16, 200, (len(centres), 2))
    k = rng.integers(0, len(centres), n)
    c = centres[k] + rng.normal(0, 8, (n, 2))
    wh = sizes[k] * rng.uniform(0.8, 1.25, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, num_classes, n)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-style resize with scikit-image (a pydetect dependency), uint8 in and out."""
    out = resize(img, (height, width) + img.shape[2:], order=1, anti_aliasing=True,
                 preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb
    g = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def photo_mosaic(width: int, height: int) -> np.ndarray:
    """Grey uint8 (height, width) image: four scikit-image photos (astronaut, coffee,
    chelsea, rocket) in a 2 x 2 grid; the astronaut's face is found by frontal-face cascades."""
    tiles = [_gray(getattr(skdata, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    w2, h2 = width // 2, height // 2
    top = np.hstack([_resize(tiles[0], w2, h2), _resize(tiles[1], width - w2, h2)])
    bottom = np.hstack([_resize(tiles[2], w2, height - h2), _resize(tiles[3], width - w2, height - h2)])
    return np.ascontiguousarray(np.vstack([top, bottom]))


def photo(name: str = "astronaut", size: int = 500) -> np.ndarray:
    """A scikit-image RGB photo shrunk so that its longer side is ``size``."""
    img = getattr(skdata, name)()[..., :3]
    f = size / max(img.shape[:2])
    return _resize(img, round(img.shape[1] * f), round(img.shape[0] * f))


def lfw_windows() -> tuple:
    """The 200 LFW-subset 25 x 25 windows of scikit-image as uint8, and labels (100 faces)."""
    windows = np.rint(skdata.lfw_subset() * 255).astype(np.uint8)
    return windows, np.array([1] * 100 + [0] * 100)


def coco_problem(n_images: int, n_cats: int = 20, seed: int = 0) -> tuple:
    """COCO-like ground truth dict and results list: ~7 objects per image (log-uniform
    sizes 8-300 px, 1% crowd), jittered detections of most objects plus background boxes,
    scores rounded to 3 decimals (ties occur)."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(n_images):
        images.append({"id": i + 1, "width": 640, "height": 480})
        k = int(rng.poisson(7))
        wh = np.exp(rng.uniform(np.log(8), np.log(300), size=(k, 2)))
        xy = rng.uniform(0, 1, size=(k, 2)) * (np.array([640, 480]) - wh).clip(1)
        cats = rng.integers(1, n_cats + 1, size=k)
        crowd = rng.random(k) < 0.01
        for j in range(k):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cats[j]),
                         "bbox": [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
                         "area": float(wh[j, 0] * wh[j, 1]), "iscrowd": int(crowd[j])})
            for _ in range(int(rng.integers(0, 4))):
                jit = rng.normal(0, 0.1, size=4) * np.r_[wh[j], wh[j]]
                cat = int(cats[j]) if rng.random() < 0.9 else int(rng.integers(1, n_cats + 1))
                results.append({"image_id": i + 1, "category_id": cat,
                                "bbox": [float(xy[j, 0] + jit[0]), float(xy[j, 1] + jit[1]),
                                         float(max(wh[j, 0] + jit[2], 1)), float(max(wh[j, 1] + jit[3], 1))],
                                "score": round(float(rng.random()), 3)})
        for _ in range(int(rng.integers(10, 25))):
            w, h = np.exp(rng.uniform(np.log(8), np.log(300), size=2))
            results.append({"image_id": i + 1, "category_id": int(rng.integers(1, n_cats + 1)),
                            "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)), float(w), float(h)],
                            "score": round(float(rng.random()), 3)})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]}
    return gt, results


def roi_problem(n: int = 2, c: int = 256, h: int = 50, w: int = 68, per_image: int = 512, stride: float = 16.0,
                generator=None) -> tuple:
    """The RoI-pooling setting of issue 7: an (n, c, h, w) feature map of a backbone of
    ``stride`` and ``per_image`` random boxes per image, in image pixels.

    Returns the features, the list of (per_image, 4) xyxy boxes and the spatial scale
    ``1 / stride``; draws from ``generator`` (default: a new one seeded with 0).
    """
    g = torch.Generator().manual_seed(0) if generator is None else generator
    x = torch.randn(n, c, h, w, generator=g)
    img_h, img_w = h * stride, w * stride
    boxes = []
    for _ in range(n):
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([img_w, img_h]) * 0.8
        wh = 16 + torch.rand(per_image, 2, generator=g) * torch.tensor([img_w, img_h]) * 0.4
        boxes.append(torch.cat([xy, xy + wh], 1))
    return x, boxes, 1.0 / stride


#: RoI input classes of ``pydetect bench ops``' roi section (issue 23), each with the
#: torchvision.ops arguments it runs roi_align with; roi_pool runs on each box class once.
ROI_CASES = {
    # name: (box class (roi_boxes), sampling_ratio, aligned, at most this many RoIs per image)
    "inside": ("inside", 2, True, None),     # roi_problem's boxes: the realistic case
    "inside, aligned=False": ("inside", 2, False, None),
    "inside, adaptive": ("inside", -1, True, None),
    "outside": ("outside", 2, True, None),
    "partly outside": ("partly outside", 2, True, None),
    "tiny": ("tiny", 2, True, None),
    "tiny, adaptive": ("tiny", -1, True, None),
    "huge": ("huge", 2, True, None),
    # ~15 x 15 samples per bin (1.2-2x the map pooled to 7x7): 32 RoIs per image keep it short
    "huge, adaptive": ("huge", -1, True, 32),
}


def roi_boxes(kind: str, n: int = 2, h: int = 50, w: int = 68, per_image: int = 512, stride: float = 16.0,
              generator=None) -> list:
    """``per_image`` xyxy boxes per image (image pixels) of one RoI input class on an h x w
    feature map of ``stride``:

    ``"inside"``
        :func:`roi_problem`'s boxes (inside the map, 1 to ~28 feature pixels a side);
    ``"outside"``
        the same sizes moved wholly beyond the map (every sample more than one feature pixel
        out: torchvision's zero-contribution case), half past the right / bottom edges, half
        before the left / top ones;
    ``"partly outside"``
        the same sizes centred on a random point of the map's border (about half out);
    ``"tiny"``
        smaller than one feature pixel (under a stride a side), inside the map;
    ``"huge"``
        1.2 to 2 times the map's size a side, centred near its centre.
    """
    g = torch.Generator().manual_seed(0) if generator is None else generator
    img_h, img_w = h * stride, w * stride
    size = torch.tensor([img_w, img_h])
    boxes = []
    for _ in range(n):
        if kind in ("inside", "outside", "partly outside"):
            xy = torch.rand(per_image, 2, generator=g) * size * 0.8
            wh = 16 + torch.rand(per_image, 2, generator=g) * size * 0.4
            if kind == "outside":
                # right / bottom: start 2 feature pixels past the far edge; left / top: end 2 before 0.
                far = torch.rand(per_image, 1, generator=g) < 0.5
                beyond = size + 2 * stride + torch.rand(per_image, 2, generator=g) * size * 0.5
                before = -wh - 2 * stride - torch.rand(per_image, 2, generator=g) * size * 0.5
                xy = torch.where(far, beyond, before)
            elif kind == "partly outside":
                centre = torch.rand(per_image, 2, generator=g) * size
                edge = torch.randint(0, 4, (per_image,), generator=g)
                centre[edge == 0, 0] = 0.0
                centre[edge == 1, 0] = img_w
                centre[edge == 2, 1] = 0.0
                centre[edge == 3, 1] = img_h
                xy = centre - wh / 2
        elif kind == "tiny":
            wh = torch.rand(per_image, 2, generator=g) * (stride - 1) + 1
            xy = torch.rand(per_image, 2, generator=g) * (size - stride)
        elif kind == "huge":
            wh = size * (1.2 + 0.8 * torch.rand(per_image, 2, generator=g))
            xy = size / 2 - wh / 2 + (torch.rand(per_image, 2, generator=g) - 0.5) * size * 0.2
        else:
            raise ValueError(f"kind must be one of inside, outside, partly outside, tiny, huge; got {kind!r}")
        boxes.append(torch.cat([xy, xy + wh], 1))
    return boxes


def dataset_mosaic(dataset, size, seed: int = 0, fill: int = 110) -> tuple:
    """One ``size = (height, width)`` RGB image holding the dataset's images (reused in turn)
    at random places in the cells of a grid, one per cell; cells as large as the largest image.

    Returns
    -------
    image : (H, W, 3) uint8
    boxes : (K, 4) float32, the pasted images' boxes shifted to the canvas
    labels : (K,) int64
    """
    rng = np.random.default_rng(seed)
    height, width = size
    cell_h = max(img.shape[0] for img, _ in dataset)
    cell_w = max(img.shape[1] for img, _ in dataset)
    canvas = np.full((height, width, 3), fill, np.uint8)
    boxes, labels = [], []
    k = 0
    for y in range(0, height - cell_h + 1, cell_h):
        for x in range(0, width - cell_w + 1, cell_w):
            img, target = dataset[k % len(dataset)]
            k += 1
            h, w = img.shape[:2]
            dy, dx = int(rng.integers(cell_h - h + 1)), int(rng.integers(cell_w - w + 1))
            canvas[y + dy:y + dy + h, x + dx:x + dx + w] = img
            boxes.append(np.asarray(target["boxes"], np.float32) + np.float32([x + dx, y + dy, x + dx, y + dy]))
            labels.append(np.asarray(target["labels"], np.int64))
    return canvas, np.concatenate(boxes).reshape(-1, 4), np.concatenate(labels)


def hough_problem(n_features: int, n_objects: int = 8, seed: int = 0, n_entries: int = 300,
                  occ_per_entry: int = 6) -> tuple:
    """An ISM codebook and matched test features whose votes gather at ``n_objects``
    hypotheses plus clutter: the arguments of :func:`pydetect.ism.accumulate_votes`."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(50, 950, n_objects), rng.uniform(50, 950, n_objects),
                               rng.uniform(40, 120, n_objects)])
    n_occ = n_entries * occ_per_entry
    occ = np.column_stack([rng.normal(0, 1.5, n_occ), rng.normal(0, 1.5, n_occ), rng.uniform(2, 8, n_occ)])
    occ_ptr = np.arange(0, n_occ + 1, occ_per_entry)
    occ_weight = np.full(n_occ, 1.0 / occ_per_entry)
    obj = rng.integers(0, n_objects, n_features)
    entry = rng.integers(0, n_entries, n_features)
    pick = occ_ptr[entry] + rng.integers(0, occ_per_entry, n_features)
    fs = centres[obj, 2] / occ[pick, 2] * rng.normal(1, 0.03, n_features)
    fx = centres[obj, 0] - fs * occ[pick, 0] + rng.normal(0, 1, n_features)
    fy = centres[obj, 1] - fs * occ[pick, 1] + rng.normal(0, 1, n_features)
    feats = np.column_stack([fx, fy, fs])
    return (feats, np.arange(n_features + 1), entry.astype(np.int64), np.ones(n_features),
            occ_ptr, occ, occ_weight)


# ------------------------------------------------------------------------ families


def same_keep(ours, theirs, scores) -> bool:
    """NMS results agree: the same kept indices in the same order up to equal scores (the
    order among equal scores is each library's own)."""
    a, b = np.asarray(ours).reshape(-1), np.asarray(theirs).reshape(-1)
    return (a.shape == b.shape and np.array_equal(np.sort(a), np.sort(b))
            and np.array_equal(scores[a], scores[b]))


def _boxes(run: _Run) -> None:
    tv = run.peer("torchvision")
    cv2 = run.peer("OpenCV")
    sizes = (1000, 10000) if run.quick else (1000, 10000, 50000)
    inputs = {n: (clustered_boxes(n), clustered_boxes(n, seed=1, num_classes=20)) for n in sizes}
    iou_n = 1000 if run.quick else 2000
    a, b = clustered_boxes(iou_n, seed=2)[0], clustered_boxes(iou_n, seed=3)[0]
    for t in run.threads:
        set_threads(t)
        for n, ((boxes, scores, _), (bb, bs, bl)) in inputs.items():
            keep = ops.nms(boxes, scores, 0.5)
            peers, agree = {}, {}
            if tv is not None:
                tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
                peers["torchvision"] = lambda: tv.nms(tb, ts, 0.5)
                agree["torchvision"] = same_keep(keep, tv.nms(tb, ts, 0.5).numpy(), scores)
            if cv2 is not None:
                xywh = ops.box_convert(boxes, "xyxy", "xywh").astype(np.float64)
                peers["OpenCV dnn.NMSBoxes"] = lambda: cv2.dnn.NMSBoxes(xywh, scores, 0.0, 0.5)
                theirs = np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, 0.5)).reshape(-1)
                agree["OpenCV dnn.NMSBoxes"] = same_keep(keep, theirs, scores)
            run.time(f"nms {n:,} clustered boxes, IoU 0.5", t, lambda: ops.nms(boxes, scores, 0.5),
                     peers, agree)

            peers, agree = {}, {}
            if tv is not None:
                tb, ts, tl = torch.from_numpy(bb), torch.from_numpy(bs), torch.from_numpy(bl)
                peers["torchvision"] = lambda: tv.batched_nms(tb, ts, tl, 0.5)
                agree["torchvision"] = same_keep(ops.batched_nms(bb, bs, bl, 0.5),
                                                 tv.batched_nms(tb, ts, tl, 0.5).numpy(), bs)
            run.time(f"batched_nms {n:,} boxes, 20 classes", t,
                     lambda: ops.batched_nms(bb, bs, bl, 0.5), peers, agree)

        peers, agree = {}, {}
        if tv is not None:
            ta, tb2 = torch.from_numpy(a), torch.from_numpy(b)
            peers["torchvision"] = lambda: tv.box_iou(ta, tb2)
            agree["torchvision"] = bool(np.allclose(tv.box_iou(ta, tb2).numpy(), ops.box_iou(a, b),
                                                    rtol=1e-5, atol=1e-6))
        run.time(f"box_iou {iou_n}×{iou_n}", t, lambda: ops.box_iou(a, b), peers, agree)


def _integral_bytes(img: np.ndarray, tables) -> int:
    """Bytes an integral image must move at least: the image read once, each table written once."""
    return img.nbytes + sum(t.nbytes for t in tables)


def _integral_bandwidth(run: _Run, case: str, t: int, ours, nbytes: int) -> None:
    """Times ``ours`` against copies of the same number of bytes (read + written: a copy of
    nbytes / 2 bytes), interleaved; one row per copy with both effective bandwidths (bytes read
    + written per second) in its note. ``numpy copyto``: into a preallocated array (the
    memcpy of issue 23); ``numpy copy``: into a new array, which pays for fresh pages as the
    integral image's new tables do (above glibc's mmap threshold, 32 MB at most, every call
    gets pages that the kernel must zero)."""
    src = np.ones(nbytes // 2, np.uint8)
    dst = np.empty_like(src)
    copies = {"numpy copyto (same bytes, preallocated)": lambda: np.copyto(dst, src),
              "numpy copy (same bytes, new array)": lambda: src.copy()}
    for name, copy in copies.items():
        times, reps = run.timeit({"pydetect": ours, name: copy})
        ours_gbs, copy_gbs = nbytes / times["pydetect"] / 1e9, nbytes / times[name] / 1e9
        run.add(OpRow(run.family, case, t, times["pydetect"] * 1e3, name, times[name] * 1e3, None, reps,
                      f"{nbytes / 1e6:.1f} MB read + written: pydetect {ours_gbs:.1f} GB/s, copy {copy_gbs:.1f} GB/s"))


def _integral(run: _Run) -> None:
    cv2 = run.peer("OpenCV")
    sk = run.peer("scikit-image")
    sizes = [(640, 480)] if run.quick else [(640, 480), (1920, 1080), (4096, 4096)]
    for w, h in sizes:
        img = photo_mosaic(w, h)
        size = f"{w}x{h} uint8"
        for t in run.threads:
            set_threads(t)
            s, q, tt = ops.integral_image(img, squared=True, tilted=True)
            peers, agree = {}, {}
            # OpenCV's default sum type is int32, which wraps from 8.4M pixels on: compare
            # with pydetect's int32 tables there (its default switches to int64).
            dtype = np.int32
            if cv2 is not None:
                peers["OpenCV integral"] = lambda: cv2.integral(img)
                agree["OpenCV integral"] = bool(np.array_equal(cv2.integral(img), s.astype(dtype)))
            if sk is not None:
                peers["scikit-image integral_image"] = lambda: sk_integral_image(img)
                agree["scikit-image integral_image"] = bool(np.array_equal(sk_integral_image(img), s[1:, 1:]))
            run.time(f"integral_image {size}: sum", t, lambda: ops.integral_image(img), peers, agree,
                     note=f"{s.dtype} table")
            if cv2 is not None:
                s32, q32, t32 = ops.integral_image(img, squared=True, tilted=True, dtype=dtype)
                c2 = cv2.integral2(img)
                run.time(f"integral_image {size}: sum + squared", t,
                         lambda: ops.integral_image(img, squared=True, dtype=dtype),
                         {"OpenCV integral2": lambda: cv2.integral2(img)},
                         {"OpenCV integral2": bool(np.array_equal(c2[0], s32) and np.array_equal(c2[1], q32))},
                         note="int32 sum, float64 squares")
                c3 = cv2.integral3(img)
                ok = all(np.array_equal(x, y) for x, y in zip(c3, (s32, q32, t32)))
                run.time(f"integral_image {size}: sum + squared + tilted", t,
                         lambda: ops.integral_image(img, squared=True, tilted=True, dtype=dtype),
                         {"OpenCV integral3": lambda: cv2.integral3(img)}, {"OpenCV integral3": bool(ok)},
                         note="int32 sum and tilted, float64 squares")
            # Effective bandwidth next to a copy of as many bytes (issue 23), default dtypes.
            _integral_bandwidth(run, f"integral_image {size}: sum, bandwidth", t,
                                lambda: ops.integral_image(img), _integral_bytes(img, [s]))
            table = np.empty_like(s)  # the same table written in place, call after call (out=)
            _integral_bandwidth(run, f"integral_image {size}: sum into out=, bandwidth", t,
                                lambda: ops.integral_image(img, out=table), _integral_bytes(img, [s]))
            _integral_bandwidth(run, f"integral_image {size}: sum + squared, bandwidth", t,
                                lambda: ops.integral_image(img, squared=True), _integral_bytes(img, [s, q]))
            _integral_bandwidth(run, f"integral_image {size}: sum + squared + tilted, bandwidth", t,
                                lambda: ops.integral_image(img, squared=True, tilted=True),
                                _integral_bytes(img, [s, q, tt]))


def _cascade(run: _Run) -> None:
    cv2 = run.peer("OpenCV")
    sk = run.peer("scikit-image")
    sizes = [(640, 480)] if run.quick else [(640, 480), (1920, 1080)]
    cases = []  # (name, our xml, cv2 xml)
    lbp_src = None
    if sk is not None:
        lbp_src = skdata.lbp_frontal_face_cascade_filename()
    tmp = tempfile.TemporaryDirectory()
    try:
        if cv2 is not None:
            haar = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
            cases.append(("Haar frontalface_default", haar, haar))
            if lbp_src is not None:
                # OpenCV needs scikit-image's <featuhreParams> typo fixed; pydetect reads both.
                lbp_fixed = os.path.join(tmp.name, "lbp.xml")
                with open(lbp_src) as src, open(lbp_fixed, "w") as dst:
                    dst.write(src.read().replace("featuhreParams", "featureParams"))
                cases.append(("LBP frontal face (scikit-image's)", lbp_src, lbp_fixed))
        for w, h in sizes:
            img = photo_mosaic(w, h)
            for name, ours_xml, cv_xml in cases:
                det, cc = CascadeDetector(ours_xml), cv2.CascadeClassifier(cv_xml)
                for t in run.threads:
                    set_threads(t)
                    a = det.detect(img, 1.1, 3).boxes.astype(int)
                    b = np.asarray(cc.detectMultiScale(img, 1.1, 3)).reshape(-1, 4)
                    b[:, 2:] += b[:, :2]
                    same = sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
                    run.time(f"{name} {w}x{h}, scale 1.1, min_neighbors 3", t,
                             lambda: det.detect(img, 1.1, 3),
                             {"OpenCV CascadeClassifier": lambda: cc.detectMultiScale(img, 1.1, 3)},
                             {"OpenCV CascadeClassifier": same}, note=f"{len(a)} vs {len(b)} boxes")
            if lbp_src is not None and (w, h) == sizes[0]:
                # scikit-image scales the window instead of the image: a speed comparison at
                # OpenCV's settings, not an output one.
                det, skc = CascadeDetector(lbp_src), SkCascade(lbp_src)
                for t in run.threads:
                    set_threads(t)
                    run.time(f"LBP frontal face {w}x{h}, scale 1.1", t, lambda: det.detect(img, 1.1, 3),
                             {"scikit-image Cascade": lambda: skc.detect_multi_scale(
                                 img, scale_factor=1.1, step_ratio=1, min_size=(24, 24), max_size=(w, h))},
                             slow=True, note="scikit-image scales the window, not the image; single-threaded")
    finally:
        tmp.cleanup()


def _haar_bank():
    return HaarFeatures((25, 25), mode="skimage")


def _haar(run: _Run) -> None:
    sk = run.peer("scikit-image")
    windows, _ = lfw_windows()
    bank = _haar_bank()
    k = 2 if run.quick else 8
    win = windows[:k]
    for t in run.threads:
        set_threads(t)
        ours = bank.compute(win, normalize=False)
        peers, agree = {}, {}
        if sk is not None:
            def theirs():
                return np.asarray([haar_like_feature(sk_integral_image(x), 0, 0, 25, 25) for x in win],
                                  dtype=np.float32)

            peers["scikit-image haar_like_feature"] = theirs
            agree["scikit-image haar_like_feature"] = bool(np.array_equal(theirs(), ours))
        run.time(f"Haar features, {k} LFW windows 25x25 ({len(bank):,} features each)", t,
                 lambda: bank.compute(win, normalize=False), peers, agree, slow=True,
                 note="scikit-image single-threaded")


def _boosting(run: _Run) -> None:
    skl = run.peer("scikit-learn")
    windows, labels = lfw_windows()
    bank = _haar_bank()
    step = 20 if run.quick else 10
    n_est = 20 if run.quick else 50
    X = np.ascontiguousarray(bank.compute(windows, normalize=False)[:, ::step])
    # 150 training windows, 50 held out, as scikit-image's Haar face example splits them.
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.choice(100, 25, replace=False), 100 + rng.choice(100, 25, replace=False)])
    train = np.setdiff1d(np.arange(200), test)
    Xtr, ytr, Xte, yte = X[train], labels[train], X[test], labels[test]
    what = f"{n_est} stumps, 150 LFW windows × {X.shape[1]:,} Haar features"
    if skl is not None:
        def theirs():
            return AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=n_est,
                                      random_state=0).fit(Xtr, ytr)

        sk_acc = theirs().score(Xte, yte)
    algorithms = ("discrete", "gentle")
    acc = {a: AdaBoost(n_est, algorithm=a).fit(Xtr, ytr).score(Xte, yte) for a in algorithms}
    for t in run.threads:
        set_threads(t)
        fns = {a: (lambda a=a: AdaBoost(n_est, algorithm=a).fit(Xtr, ytr)) for a in algorithms}
        if skl is not None:
            fns["scikit-learn"] = theirs
        times, reps = run.timeit(fns, slow=True)
        for a in algorithms:
            note = f"held-out accuracy {acc[a]:.2f}"
            if skl is None:
                run.add(OpRow(run.family, f"AdaBoost {a}, {what}", t, times[a] * 1e3, repeats=reps,
                              note=note + "; no peer installed"))
                continue
            # Different algorithms (and tie-breaking) pick different stumps: agreement means
            # the same held-out accuracy within 0.1.
            run.add(OpRow(run.family, f"AdaBoost {a}, {what}", t, times[a] * 1e3,
                          "scikit-learn AdaBoostClassifier (SAMME)", times["scikit-learn"] * 1e3,
                          bool(abs(acc[a] - sk_acc) <= 0.1), reps,
                          note + f" vs {sk_acc:.2f}; scikit-learn single-threaded"))


def _proposals(run: _Run) -> None:
    cv2x = run.peer("OpenCV contrib")
    sk = run.peer("scikit-image")
    ssp = run.peer("selectivesearch")
    size = 256 if run.quick else 500
    img = photo("astronaut", size)
    shape = f"astronaut {img.shape[1]}x{img.shape[0]}"
    modes = ("single", "fast") if run.quick else ("single", "fast", "quality")
    if cv2x is not None:
        bgr = np.ascontiguousarray(img[:, :, ::-1])

        def opencv(mode):
            ss = cv2x.segmentation.createSelectiveSearchSegmentation()
            ss.setBaseImage(bgr)
            {"single": ss.switchToSingleStrategy, "fast": ss.switchToSelectiveSearchFast,
             "quality": ss.switchToSelectiveSearchQuality}[mode]()
            return ss.process()
    for t in run.threads:
        set_threads(t)
        for mode in modes:
            peers, notes = {}, {}
            n_ours = len(ops.selective_search(img, mode))
            if cv2x is not None:
                peers["OpenCV contrib ximgproc"] = lambda mode=mode: opencv(mode)
                notes["OpenCV contrib ximgproc"] = f"{n_ours} vs {len(opencv(mode))} boxes; different rankings"
            if mode == "single" and ssp is not None:
                def package():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        return ssp.selective_search(img)  # its defaults: scale 1, sigma 0.8, min_size 50

                peers["selectivesearch package"] = package
                notes["selectivesearch package"] = (f"{n_ours} vs {len(package()[1])} regions; "
                                                    "pure Python, one strategy, its defaults")
            run.time(f"selective_search {mode}, {shape}", t, lambda mode=mode: ops.selective_search(img, mode),
                     peers, slow=mode == "quality" or "selectivesearch package" in peers, notes=notes,
                     note=f"{n_ours} boxes")
        peers, agree, note = {}, {}, ""
        ours = ops.felzenszwalb(img, scale=100, sigma=0.8, min_size=50)
        n_ours = int(ours.max()) + 1
        if sk is not None:
            peers["scikit-image felzenszwalb"] = lambda: sk_felzenszwalb(img, scale=100, sigma=0.8, min_size=50)
            n_sk = int(sk_felzenszwalb(img, scale=100, sigma=0.8, min_size=50).max()) + 1
            # Same graph and merge rule; the order of equal edge weights differs, so the
            # segmentations are compared by their number of segments (within 2%).
            agree["scikit-image felzenszwalb"] = bool(abs(n_ours - n_sk) <= max(1, 0.02 * n_sk))
            note = f"{n_ours} vs {n_sk} segments; scikit-image single-threaded"
        run.time(f"felzenszwalb {shape}, scale 100, sigma 0.8, min_size 50", t,
                 lambda: ops.felzenszwalb(img, scale=100, sigma=0.8, min_size=50), peers, agree, note=note)


def _roi(run: _Run) -> None:
    tv = run.peer("torchvision")
    if tv is None:
        return
    # The realistic setting (roi_problem: 2 x 512 RoIs) and the classes of ROI_CASES; quick
    # mode: one image of 128 RoIs.
    n, per_image = (1, 128) if run.quick else (2, 512)
    g = torch.Generator().manual_seed(0)
    x, inside, scale = roi_problem(n=n, per_image=per_image, generator=g)
    c = x.shape[1]
    grads = {}

    def grad_for(k):
        if k not in grads:
            grads[k] = torch.randn(k, c, 7, 7, generator=torch.Generator().manual_seed(k))
        return grads[k]

    def compare(name, what, boxes, kwargs, t, note):
        def call(f, z):
            return f(z, boxes, 7, spatial_scale=scale, **kwargs)

        ours_fn, tv_fn = getattr(ops, name), getattr(tv, name)
        with torch.no_grad():
            same = torch.allclose(call(ours_fn, x), call(tv_fn, x), rtol=1e-4, atol=1e-5)
            run.time(f"{name} forward, {what}", t, lambda: call(ours_fn, x),
                     {"torchvision": lambda: call(tv_fn, x)}, {"torchvision": bool(same)}, note=note)
        grad = grad_for(sum(len(b) for b in boxes))

        def backward(fn):
            xg = x.clone().requires_grad_(True)
            out = call(fn, xg)
            return lambda: torch.autograd.grad(out, xg, grad, retain_graph=True)[0]

        ours_b, tv_b = backward(ours_fn), backward(tv_fn)
        same = torch.allclose(ours_b(), tv_b(), rtol=1e-4, atol=1e-4)
        run.time(f"{name} backward, {what}", t, ours_b, {"torchvision": tv_b}, {"torchvision": bool(same)},
                 note=(note + "; " if note else "") + "gradient of the input, graph kept")

    box_sets = {"inside": inside}
    for kind in ("outside", "partly outside", "tiny", "huge"):
        box_sets[kind] = roi_boxes(kind, n=n, per_image=per_image, generator=torch.Generator().manual_seed(1))
    for t in run.threads:
        set_threads(t)
        for case, (kind, sr, aligned, most) in ROI_CASES.items():
            boxes = [b[:most] for b in box_sets[kind]]
            k = sum(len(b) for b in boxes)
            what = f"{case}: features {tuple(x.shape)}, {k} RoIs, 7x7"
            note = f"sampling_ratio {sr}, aligned={aligned}"
            compare("roi_align", what, boxes, {"sampling_ratio": sr, "aligned": aligned}, t, note)
        for kind, boxes in box_sets.items():
            k = sum(len(b) for b in boxes)
            compare("roi_pool", f"{kind}: features {tuple(x.shape)}, {k} RoIs, 7x7", boxes, {}, t, "")


def _eval(run: _Run) -> None:
    cocoeval = run.peer("pycocotools")
    fce = run.peer("faster-coco-eval")
    n_images = 100 if run.quick else 500
    gt, results = coco_problem(n_images)
    ours_stats = np.asarray(pdeval.coco_evaluate(gt, results)["stats"])
    peers, agree, notes = {}, {}, {}
    quiet = contextlib.redirect_stdout

    def check(name, fn):
        stats = np.asarray(fn())
        diff = float(np.abs(stats - ours_stats).max())
        agree[name] = bool(diff <= 1e-12)
        notes[name] = f"max abs diff of the 12 stats {diff:.1e}; peer loads its index once, untimed"
        peers[name] = fn

    if cocoeval is not None:
        from pycocotools.coco import COCO  # deferred: pycocotools is an optional peer

        with quiet(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = json.loads(json.dumps(gt))
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))

        def pycoco():
            with quiet(io.StringIO()):
                ev = cocoeval.COCOeval(coco_gt, coco_dt, "bbox")
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            return ev.stats

        check("pycocotools COCOeval", pycoco)
    if fce is not None:
        with quiet(io.StringIO()):
            f_gt = fce.COCO(json.loads(json.dumps(gt)))
            f_dt = f_gt.loadRes(json.loads(json.dumps(results)))

        def faster():
            with quiet(io.StringIO()):
                ev = fce.COCOeval_faster(f_gt, f_dt, "bbox")
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            return ev.stats

        check("faster-coco-eval", faster)
    what = f"coco_evaluate bbox, {n_images} images, {len(gt['annotations']):,} GT, {len(results):,} detections"
    for t in run.threads:
        set_threads(t)
        run.time(what, t, lambda: pdeval.coco_evaluate(gt, results), peers, agree, slow=True, notes=notes)


def _ism(run: _Run) -> None:
    skl = run.peer("scikit-learn")
    problem = hough_problem(500 if run.quick else 1500)
    votes, _, _, _ = accumulate_votes(*problem)
    votes = np.ascontiguousarray(votes, np.float64)
    seeds = votes[::5 if run.quick else 10].copy()  # scikit-learn takes ~1-3 ms per seed
    ones = np.ones(len(votes))
    bw = 12.0

    def ours():
        return mean_shift(votes, ones, seeds, bandwidth_xy=bw, bandwidth_scale=bw, adaptive=False)[0]

    what = f"fixed-bandwidth mean-shift, {len(votes):,} Hough votes (x, y, scale), {len(seeds)} seeds"
    for t in run.threads:
        set_threads(t)
        peers, agree = {}, {}
        if skl is not None:
            def theirs():
                return MeanShift(bandwidth=bw, seeds=seeds, n_jobs=1).fit(votes).cluster_centers_

            a, b = np.asarray(ours()), theirs()
            same = a.shape == b.shape and (not len(a) or bool(
                np.abs(a[:, None, :] - b[None, :, :]).max(2).min(1).max() <= 1e-6))
            peers["scikit-learn MeanShift"], agree["scikit-learn MeanShift"] = theirs, same
        # scikit-learn runs with n_jobs=1, its fastest setting here: its joblib workers
        # (n_jobs=2) made it ~15x slower on 2 cores, and they keep cores busy between calls.
        run.time(what, t, ours, peers, agree, slow=True,
                 note="same votes and seeds; scikit-learn n_jobs=1 (its fastest here)")


_FAMILY_FNS = {
    "boxes": _boxes,
    "integral": _integral,
    "cascade": _cascade,
    "haar": _haar,
    "boosting": _boosting,
    "proposals": _proposals,
    "roi": _roi,
    "eval": _eval,
    "ism": _ism,
}

#: Op families, in the order they run.
FAMILIES = tuple(_FAMILY_FNS)


# ------------------------------------------------------------------------- entry point


def _thread_counts(threads) -> list:
    if threads is None:
        return [pydetect.get_num_threads()]
    if isinstance(threads, (int, np.integer)) and not isinstance(threads, bool):
        threads = [threads]
    try:
        out = [int(t) for t in threads]
    except (TypeError, ValueError):
        raise TypeError(f"threads must be None, an int or a sequence of ints, got {threads!r}") from None
    if not out or any(t < 1 for t in out):
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return out


def run_op_benchmarks(families=None, quick: bool = False, threads=None, repeats: int = 7,
                      progress=print) -> OpReport:
    """Times pydetect's ops against every installed peer and checks that the results agree.

    Parameters
    ----------
    families : iterable of str or None
        Op families to run (see :data:`FAMILIES`); None runs all.
    quick : bool, default False
        Smaller inputs and at most 3 repeats: about 1-2 minutes on 2 cores with all peers
        (the full run takes several minutes).
    threads : int, sequence of int or None
        Thread counts to run at (pydetect, torch and OpenCV are set to each in turn); None
        uses ``pydetect.get_num_threads()``. Thread counts are restored afterwards.
    repeats : int >= 1, default 7
        Timed calls per case after one warm-up call (median taken); in quick mode at most 3.
        Cases whose peer takes seconds per call use ``max(3, repeats // 2)``; fast cases
        repeat until 0.3 s (quick) or 1 s (full) have passed.
    progress : callable or None, default print
        Called with one line of text per family and per row.

    Returns
    -------
    OpReport
        ``rows`` (one per pydetect / peer comparison), ``missing`` (peers that are not
        installed, with their pip package and the families they would have covered),
        ``errors`` (families that raised); ``markdown()`` and ``to_json()`` render it.
    """
    if families is None:
        families = list(FAMILIES)
    elif isinstance(families, str):
        families = [families]
    families = list(dict.fromkeys(families))
    unknown = [f for f in families if f not in _FAMILY_FNS]
    if unknown:
        raise ValueError(f"families: unknown {unknown}; choose from {list(FAMILIES)}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    counts = _thread_counts(threads)
    repeats = min(int(repeats), 3) if quick else int(repeats)

    report = OpReport(families=families, threads=counts, quick=bool(quick), repeats=repeats,
                      machine=machine(), date=datetime.date.today().isoformat(),
                      load_start=load_average())
    report.versions["pydetect"] = getattr(pydetect, "__version__", "?")
    run = _Run(report, bool(quick), counts, repeats, progress)
    before = _current_threads()
    start = time.perf_counter()
    try:
        for fam in families:
            run.family = fam
            run.progress(f"{fam}:")
            t0 = time.perf_counter()
            try:
                _FAMILY_FNS[fam](run)
            except Exception as exc:  # one broken family does not lose the others' rows
                report.errors[fam] = f"{type(exc).__name__}: {exc}"
                run.progress(f"  {fam} failed: {report.errors[fam]}")
            run.progress(f"  ({time.perf_counter() - t0:.1f} s)")
    finally:
        _restore_threads(before)
        report.seconds = time.perf_counter() - start
        report.load_end = load_average()
    return report


def _current_threads() -> dict:
    out = {"pydetect": pydetect.get_num_threads()}
    for name, getter in (("torch", "get_num_threads"), ("cv2", "getNumThreads")):
        try:
            out[name] = getattr(importlib.import_module(name), getter)()
        except Exception:  # not installed: nothing to restore
            pass
    return out


def _restore_threads(before: dict) -> None:
    pydetect.set_num_threads(before["pydetect"])
    for name, setter in (("torch", "set_num_threads"), ("cv2", "setNumThreads")):
        if name in before:
            getattr(sys.modules[name], setter)(before[name])
