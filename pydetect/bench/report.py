"""The report of a detector comparison: one table, ``report.md``, ``report.json`` and plots.

Plots (PNG, matplotlib's object API on the Agg canvas, written atomically):

- ``pr_curves.png``: one precision-recall curve per detector at IoU 0.5, the precision averaged
  over classes at COCO's 101 recall points (its mean is the detector's AP50);
- ``speed_accuracy.png``: AP50 and AP against inference time per image (log scale);
- ``samples.png``: the same evaluation images with the ground truth and each detector's top-k
  detections, k the number of ground-truth objects of the image (detectors' scores are not
  on one scale, so no common threshold would be fair).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from pydetect._io import atomic_write
from pydetect.viz import class_color, draw_detections

__all__ = ["format_table", "write_report"]

_COLUMNS = ("detector", "COCO AP", "AP50", "AP75", "VOC mAP", "training", "inference", "model size")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _size(n: int) -> str:
    return f"{n / 1e3:.0f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def _cells(row: dict) -> list:
    c = row["coco"]
    trained = "pretrained" if row["key"].startswith("opencv") else _duration(row["train_seconds"])
    if row["cached"] and not row["key"].startswith("opencv"):
        trained += " (cached)"
    return [row["name"], f"{c['AP']:.3f}", f"{c['AP50']:.3f}", f"{c['AP75']:.3f}", f"{row['voc']['mAP']:.3f}",
            trained, f"{row['infer_ms_per_image']:.1f} ms", _size(row["model_bytes"])]


def format_table(report: dict, markdown: bool = False) -> str:
    """The comparison table: plain aligned text, or a markdown table."""
    rows = [list(_COLUMNS)] + [_cells(r) for r in report["rows"]]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])


def _ap_cell(ap) -> str:
    return "–" if ap is None or not np.isfinite(ap) else f"{ap:.2f}"  # "–": no object of the class in the evaluation split


def _per_class_table(report: dict) -> str:
    names = report["class_names"]
    if len(names) < 2:
        return ""
    head = "| detector | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    body = "".join("| " + r["name"] + " | " + " | ".join(_ap_cell(r['voc']['AP50'].get(n)) for n in names)
                   + " |\n" for r in report["rows"])
    return head + body


def _one_stage_trade_off(report: dict) -> str:
    """A sentence on speed vs accuracy of the one-stage detectors against Faster R-CNN, from
    this run's figures ("" when the run lacks them)."""
    rows = {r["key"]: r for r in report["rows"]}
    two = rows.get("faster_rcnn")
    ones = [rows[k] for k in ("yolo", "ssd") if k in rows]
    if two is None or not ones:
        return ""
    parts = []
    for r in ones:
        speed = two["infer_ms_per_image"] / max(r["infer_ms_per_image"], 1e-9)
        gap = r["coco"]["AP50"] - two["coco"]["AP50"]
        parts.append(f"{r['name']} runs at {r['infer_ms_per_image']:.1f} ms per image, {speed:.2f}x Faster R-CNN's "
                     f"speed, with AP50 {gap:+.3f} and AP75 {r['coco']['AP75'] - two['coco']['AP75']:+.3f} "
                     "against it")
    return ("Speed and accuracy, one stage against two: the one-stage detectors classify and regress "
            "fixed priors in one pass (no proposals, no per-RoI head). " + "; ".join(parts) + ".")


def _markdown(report: dict) -> str:
    load = ", ".join(f"{v:.1f}" for v in (report["load_average_start"], report["load_average_end"]) if v is not None)
    budget = ("**quick budget**: smaller splits and a minute or two of training per detector, so the "
              "models are weaker than at the full budget" if report["budget"] == "quick" else
              "full budget: each detector's default budget, counted in iterations, pretraining epochs and "
              "cascade stages (the time settings are caps)" if report.get("budget_counted") else
              "full budget: each detector's default wall-clock training budget")
    if report.get("overrides"):
        budget += f"; parameters overridden for {', '.join(report['overrides'])} (see Parameters)"
    split = report.get("eval_split", "test")
    lines = [
        f"# Detector comparison on {report['dataset']} ({split} split)",
        "",
        f"{report['date']} · {report['machine']} · {report['threads']} threads · load average (start, end) "
        f"{load or 'n/a'} · pydetect {report['pydetect']} (code {report.get('code', 'n/a')}) · run took "
        f"{_duration(report['wall_seconds'])}",
        "",
        f"Data: {report['data']}. Budget: {budget}. Every detector is trained from scratch on the train "
        f"split (no downloaded weights) and evaluated on the same {split} split: COCO AP (IoU .50:.95), "
        "AP50, AP75 (pydetect.eval, equal to pycocotools), VOC mAP (all-point, IoU 0.5); training is wall "
        f"time, inference is wall time per {split} image (whole pipeline, including proposals), model size "
        "is the saved file.",
        "",
        format_table(report, markdown=True),
        "",
    ]
    reached = _training_reached(report)
    if reached:
        lines += [reached, ""]
    trade_off = _one_stage_trade_off(report)
    if trade_off:
        lines += [trade_off, ""]
    per_class = _per_class_table(report)
    if per_class:
        lines += [f"VOC AP50 per class (– : no {split} object of the class):", "", per_class]
    lines += ["![precision-recall](pr_curves.png)", "", "![speed and accuracy](speed_accuracy.png)", "",
              "![sample detections](samples.png)", "", "## Parameters", ""]
    lines += [f"- {r['name']}: `{r['detector']}`" for r in report["rows"]]
    return "\n".join(lines) + "\n"


def _training_reached(report: dict) -> str:
    """One sentence on how far each detector's training went, naming any stage a wall-clock
    cap ended before its count (then the run is not comparable with one at the counts)."""
    parts, cut = [], []
    for r in report["rows"]:
        done = []
        if r.get("cascade_stages"):
            stages = r["cascade_stages"]
            done.append(f"{len(stages)} cascade{'s' if len(stages) > 1 else ''} of "
                        + (f"{min(stages)}–{max(stages)}" if min(stages) < max(stages) else f"{stages[0]}")
                        + " stages")
        if r.get("pretrain_epochs") is not None:
            epochs = r["pretrain_epochs"]
            done.append(f"{epochs:.3g} pretraining epoch{'' if epochs == 1 else 's'}")
        if r.get("train_iterations") is not None:
            done.append(f"{r['train_iterations']:,} iteration{'' if r['train_iterations'] == 1 else 's'}")
        if done:
            parts.append(f"{r['name']} {' + '.join(done)}")
        if r.get("cut_by_clock"):
            cut.append(f"{r['name']} ({', '.join(r['cut_by_clock'])})")
    if not parts:
        return ""
    text = "Training reached: " + "; ".join(parts) + "."
    if cut:
        text += (" **Stopped by its time budget before its count**: " + "; ".join(cut)
                 + " (what a time budget buys depends on the machine's speed that day, so these rows are "
                 "not comparable with a run on a faster or slower machine).")
    return text


def _json_ready(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k != "rows"}
    out["rows"] = [{k: v for k, v in r.items() if k != "detections"} for r in report["rows"]]
    return out


def _save_figure(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _new_figure(size):
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _color(k: int):
    return np.array(class_color(k)) / 255.0 * 0.8


def plot_pr_curves(report: dict, path: str) -> str:
    """One class-averaged precision-recall curve per detector at IoU 0.5."""
    fig = _new_figure((6.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    for k, r in enumerate(report["rows"]):
        ax.plot(r["pr"]["recall"], r["pr"]["precision"], color=_color(k),
                label=f"{r['name']} (AP50 {r['coco']['AP50']:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision (mean over classes)",
           title=f"{report['dataset']}: precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def plot_speed_accuracy(report: dict, path: str) -> str:
    """AP50 (filled) and AP (hollow) against inference milliseconds per image."""
    fig = _new_figure((6.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for k, r in enumerate(report["rows"]):
        x = max(r["infer_ms_per_image"], 1e-3)
        ax.scatter([x], [r["coco"]["AP50"]], color=_color(k), s=50, label=r["name"])
        ax.scatter([x], [r["coco"]["AP"]], facecolors="none", edgecolors=_color(k), s=50)
        ax.plot([x, x], [r["coco"]["AP"], r["coco"]["AP50"]], color=_color(k), alpha=0.4)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 30, 60 rather than 3x10^1, 6x10^1
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set(ylim=(0, 1.02), xlabel="inference ms per image (log scale)", ylabel="AP50 (filled) / AP (hollow)",
           title=f"{report['dataset']}: accuracy vs speed ({report['threads']} threads)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def plot_samples(report: dict, evaluation, path: str, n_images: int = 4) -> str:
    """Ground truth and each detector's top-k detections on the first ``n_images`` evaluation images."""
    names = report["class_names"]
    n_images = min(n_images, len(evaluation))
    rows = [("ground truth", None)] + [(r["name"], r["detections"]) for r in report["rows"]]
    fig = _new_figure((2.6 * n_images, 2.5 * len(rows)))
    for i, (title, dets) in enumerate(rows):
        for j in range(n_images):
            image, target = evaluation[j]
            if dets is None:
                drawn = draw_detections(image, target, names)
            else:
                k = max(1, len(target["labels"]))
                drawn = draw_detections(image, dets[j].sorted()[:k], names)
            ax = fig.add_subplot(len(rows), n_images, i * n_images + j + 1)
            ax.imshow(drawn)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle("top-k detections, k = the image's number of objects", fontsize=9)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def write_report(report: dict, evaluation, out: str) -> dict:
    """Writes ``report.md``, ``report.json`` and the three plots into ``out``; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = {"pr_curves": plot_pr_curves(report, os.path.join(out, "pr_curves.png")),
             "speed_accuracy": plot_speed_accuracy(report, os.path.join(out, "speed_accuracy.png")),
             "samples": plot_samples(report, evaluation, os.path.join(out, "samples.png"))}
    paths["json"] = os.path.join(out, "report.json")
    with atomic_write(paths["json"], "w") as f:
        json.dump(_json_ready(report), f, indent=1, default=float)
    paths["markdown"] = os.path.join(out, "report.md")
    with atomic_write(paths["markdown"], "w") as f:
        f.write(_markdown(report))
    return paths
