"""Drawing detections on images and plotting precision-recall curves.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend
change, no display needed) and are written atomically as PNG.
"""

from __future__ import annotations

import colorsys
import io
import os

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pydetect._io import atomic_write
from pydetect._validation import as_boxes, as_image, as_labels, check_fraction, check_int, check_real
from pydetect.eval.coco import REC_THRS
from pydetect.structures import Detections

from pydetect.cascade.draw import draw_feature  # a cascade feature drawn on its window

__all__ = ["draw_detections", "plot_pr", "class_color", "draw_feature", "overlay_heatmap", "score_map_heat"]

_MAX_THICKNESS = 32767  # OpenCV's MAX_THICKNESS
_MAX_DPI = 1000  # a 6 x 5 inch figure of 6000 x 5000 pixels
_MAX_COORD = 2**30


def class_color(label: int) -> tuple:
    """A distinct, deterministic RGB colour for a class index (golden-ratio hue steps)."""
    h = (check_int(label, "label") * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image, detections, class_names=None, *, score_threshold: float = 0.0, thickness: int = 2,
                    show_scores: bool = True) -> np.ndarray:
    """Draws boxes with class names and scores on a copy of an image.

    Parameters
    ----------
    image : array, shape (H, W) or (H, W, 3)
        RGB (or grey) uint8, or float in [0, 1].
    detections : Detections or dict
        Boxes (N, 4) xyxy with ``scores`` and ``labels``; a target dict (``boxes``,
        ``labels``) is drawn without scores.
    class_names : sequence of str, optional
        Names for the labels; default: the label numbers.
    score_threshold : float
        Detections scoring below this are not drawn.
    thickness : int
        Line thickness in pixels.
    show_scores : bool
        Append the score to the caption.

    Returns
    -------
    array, shape (H, W, 3), uint8
        A new RGB image; colours depend on the class (:func:`class_color`).
    """
    img = as_image(image, "image")
    img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img.copy()
    score_threshold = check_real(score_threshold, "score_threshold")
    thickness = check_int(thickness, "thickness", minimum=1, maximum=_MAX_THICKNESS)
    if isinstance(detections, dict):
        for key in ("boxes", "labels"):
            if key not in detections:
                raise ValueError(f"a target dict in detections needs a {key!r} entry")
        boxes = as_boxes(detections["boxes"], "detections['boxes']", dtype=np.float64)[0]
        labels = as_labels(detections["labels"], len(boxes), "detections['labels']")
        scores = None
    elif isinstance(detections, Detections):
        boxes = detections.boxes.astype(np.float64)
        labels = detections.labels
        scores = detections.scores.astype(np.float64)
    else:
        raise TypeError(f"detections must be a Detections or a target dict, got {type(detections).__name__}")
    if class_names is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must lie in [0, {len(class_names)}) to index class_names, "
                         f"got values in [{labels.min()}, {labels.max()}]")
    h, w = img.shape[:2]
    # OpenCV takes 32-bit int coordinates: corners beyond +-2**30, far outside any image,
    # are moved there, which draws the same pixels.
    boxes = np.clip(boxes, -_MAX_COORD, _MAX_COORD)
    font_scale = max(0.35, min(h, w) / 800)
    order = np.arange(len(boxes)) if scores is None else np.argsort(scores, kind="stable")  # best drawn last (on top)
    for i in order:
        if scores is not None and scores[i] < score_threshold:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        color = class_color(labels[i])
        cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thickness)
        name = class_names[labels[i]] if class_names is not None else str(int(labels[i]))
        caption = f"{name} {scores[i]:.2f}" if (scores is not None and show_scores) else name
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + 2)
        cv2.rectangle(img, (x1, ty - th - 1), (x1 + tw + 1, ty + base - 1), color, -1)
        cv2.putText(img, caption, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _curves_from(results, class_names=None) -> dict:
    """{name: (recall, precision, ap)} from voc_evaluate / coco_evaluate output or a plain dict."""
    if isinstance(results, dict) and "precision" in results and isinstance(results["precision"], dict):
        return {n: (np.asarray(results["recall"][n]), np.asarray(results["precision"][n]), results["AP"].get(n))
                for n in results["precision"]}
    if isinstance(results, dict) and "precision" in results:  # coco_evaluate(..., return_arrays=True)
        prec = np.asarray(results["precision"])  # (T, R, K, A, M)
        names = class_names or list(results.get("per_class", {})) or [str(k) for k in range(prec.shape[2])]
        out = {}
        for k, n in enumerate(names):
            p = prec[0, :, k, 0, -1]  # IoU 0.5, all areas, 100 detections
            if (p > -1).any():
                out[f"{n}"] = (REC_THRS, np.clip(p, 0, None), float(p[p > -1].mean()))
        return out
    if isinstance(results, dict):
        out = {}
        for n, v in results.items():
            rec, prec = v[0], v[1]
            out[n] = (np.asarray(rec), np.asarray(prec), v[2] if len(v) > 2 else None)
        return out
    raise TypeError("results must be a voc_evaluate or coco_evaluate(return_arrays=True) result, "
                    "or a dict {name: (recall, precision)}")


def plot_pr(results, path, *, class_names=None, title: str | None = None, dpi: int = 100) -> str:
    """Plots precision-recall curves, one per class, and saves them as PNG.

    Parameters
    ----------
    results : dict
        The output of :func:`pydetect.eval.voc_evaluate`, of
        :func:`pydetect.eval.coco_evaluate` with ``return_arrays=True`` (curves at IoU 0.5,
        all areas), or ``{name: (recall, precision[, ap])}``.
    path : path
        The PNG file to write (atomically).
    class_names : sequence of str, optional
        Class names for COCO arrays (default: the result's ``per_class`` keys).
    title : str, optional
    dpi : int

    Returns
    -------
    str
        ``path``.
    """
    dpi = check_int(dpi, "dpi", minimum=1, maximum=_MAX_DPI)
    curves = _curves_from(results, class_names)
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, (rec, prec, ap)) in enumerate(curves.items()):
        if rec.size == 0 or not np.isfinite(rec).all():
            continue
        label = name if ap is None or not np.isfinite(ap) else f"{name} (AP {ap:.3f})"
        ax.plot(rec, prec, drawstyle="steps-post", color=np.array(class_color(k)) / 255.0 * 0.8, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if curves:
        ax.legend(loc="lower left", fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = os.fspath(path)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def overlay_heatmap(image, heat, *, alpha: float = 0.5, vmin=None, vmax=None) -> np.ndarray:
    """Blends a heat map (a class activation map, Grad-CAM, a score map) over an image.

    Parameters
    ----------
    image : array, shape (H, W) or (H, W, 3)
        RGB (or grey) uint8, or float in [0, 1].
    heat : array, shape (H, W)
        Finite values; mapped linearly from [vmin, vmax] (default: its min and max) to
        OpenCV's JET colours (blue low, red high).
    alpha : float in [0, 1]
        Weight of the heat colours.

    Returns
    -------
    array, shape (H, W, 3), uint8
    """
    img = as_image(image, "image")
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    heat = np.asarray(heat, np.float64)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"heat must have the image's shape {img.shape[:2]}, got {heat.shape}")
    if not np.isfinite(heat).all():
        raise ValueError("heat must be finite")
    alpha = check_fraction(alpha, "alpha")
    lo = float(heat.min()) if vmin is None else check_real(vmin, "vmin")
    hi = float(heat.max()) if vmax is None else check_real(vmax, "vmax")
    scaled = np.clip((heat - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(heat)
    colours = cv2.applyColorMap((scaled * 255).round().astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return (img * (1 - alpha) + colours * alpha).round().astype(np.uint8)


def score_map_heat(score_map, class_index: int, image_shape) -> np.ndarray:
    """A :class:`pydetect.detectors.overfeat.ScoreMap`'s scores of one class (0 background,
    label + 1 an object class) as an (H, W) image-sized map: each cell's value sits at its
    window's centre and is interpolated bilinearly between centres (0 outside them)."""
    h, w = (int(v) for v in image_shape[:2])
    scores = np.asarray(score_map.scores)
    n = scores.shape[0]
    c = check_int(class_index, "class_index")
    if not 0 <= c < n:
        raise ValueError(f"class_index must lie in [0, {n}), got {class_index}")
    # map pixel (u, v) of the score map -> image pixel: x = offset + window / 2 + stride u
    sx, sy = score_map.stride
    ox = score_map.offset[0] + score_map.window[0] / 2 - 0.5
    oy = score_map.offset[1] + score_map.window[1] / 2 - 0.5
    m = np.array([[sx, 0, ox], [0, sy, oy]], np.float64)
    return cv2.warpAffine(scores[c].astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
