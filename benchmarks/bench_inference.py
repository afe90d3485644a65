"""Large images and many images: streaming throughput, and tiled inference on one huge image.

1. Throughput (images/s) over a folder of faces_in_clutter PNGs with OpenCV's frontal-face
   cascade (as a saved ViolaJonesDetector): a plain Python loop (read, predict) against
   ``detect_folder`` in this process (a reader thread decoding ahead) and with 1 and 2 worker
   processes (their start-up, about a second each, included). Median of ``--repeats`` runs,
   interleaved.
2. One synthetic 8000 x 10000 RGB image (faces_in_clutter test images pasted into a grid):
   ``predict_tiled`` (512 px tiles, overlap 0.2, greedy merge) read from a ``.npy`` file,
   against the whole image shrunk to a longer side of 1024 and run once, as a user would:
   time, recall of the faces at IoU 0.5, and the detector's own recall on the original
   (normal-size) images. Peak memory is measured in child processes (``VmHWM``), for the
   tiled run and, with a detector that returns nothing (memory depends on the source, not the
   detector), for each kind of input.

    PYTHONPATH=. python benchmarks/bench_inference.py [--images 60] [--repeats 3] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from pydetect.bench.ops import dataset_mosaic
from pydetect.bench.results import record_section
from pydetect.bench.timing import machine

RESULTS = Path(__file__).with_name("RESULTS.md")
CASCADE = "haarcascade_frontalface_default.xml"
SECTION = "large images and many images"


def face_detector():
    import cv2

    from pydetect.detectors import ViolaJonesDetector

    return ViolaJonesDetector.from_cascade(cv2.data.haarcascades + CASCADE, class_name="face")


def matched(truth, boxes) -> np.ndarray:
    """For each true box, whether a detection overlaps it with IoU >= 0.5."""
    from pydetect import ops

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return ops.box_iou(truth, boxes).max(1) >= 0.5 if len(boxes) and len(truth) else np.zeros(len(truth), bool)


def throughput(root, n_images, repeats):
    import cv2

    from pydetect import data
    from pydetect.data import read_image
    from pydetect.inference import detect_folder

    folder = os.path.join(root, "images")
    os.makedirs(folder)
    for i, (image, _) in enumerate(data.faces_in_clutter("test", n_images=n_images)):
        cv2.imwrite(os.path.join(folder, f"face_{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    model = os.path.join(root, "faces.model")
    face_detector().save(model)
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))

    def plain_loop():
        from pydetect.detectors import BaseDetector

        detector = BaseDetector.load(model)
        return [detector.predict(read_image(p)) for p in paths]

    runs = {"plain loop": plain_loop}
    for workers in (0, 1, 2):
        def stream(workers=workers):
            out = tempfile.mkdtemp(dir=root)
            return detect_folder(model, folder, out, workers=workers, progress=False)
        runs[f"detect_folder, workers={workers}" + (" (in process)" if workers == 0 else "")] = stream
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return {name: n_images / statistics.median(t) for name, t in times.items()}


_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np

    def peak_mb():
        # VmHWM: the peak resident size of this process's memory since its exec (ru_maxrss would
        # also count the parent's, inherited through fork and exec on Linux).
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    from pydetect import Detections
    from pydetect.inference import predict_tiled
    source, kind, tile, overlap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if kind == "faces":
        import cv2
        from pydetect.detectors import ViolaJonesDetector
        detector = ViolaJonesDetector.from_cascade(cv2.data.haarcascades + "{cascade}", class_name="face")
    else:
        detector = lambda tile: Detections()
    image = {{"memmap": lambda p: np.load(p, mmap_mode="r"), "array": np.load}}.get(sys.argv[5], str)(source)
    before = peak_mb()
    t0 = time.perf_counter()
    dets = predict_tiled(detector, image, tile=tile, overlap=overlap)
    seconds = time.perf_counter() - t0
    print(json.dumps({{"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak_mb(),
                      "boxes": dets.boxes.tolist()}}))
""").format(cascade=CASCADE)


def child_run(source, kind, tile, overlap, how="path"):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                                      + sys.path))
    done = subprocess.run([sys.executable, "-c", _CHILD, source, kind, str(tile), str(overlap), how],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def large_image(root, size, tile, overlap):
    import cv2

    from pydetect import data
    from pydetect.inference import tile_grid

    dataset = data.faces_in_clutter("test")
    detector = face_detector()
    own = np.concatenate([matched(target["boxes"], detector.predict(img).boxes) for img, target in dataset])
    image, truth, _ = dataset_mosaic(dataset, size, seed=0)
    path = os.path.join(root, "large.npy")
    np.save(path, image)
    png = os.path.join(root, "large.png")
    cv2.imwrite(png, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    print(f"  {size[0]} x {size[1]} image, {len(truth)} faces", flush=True)

    tiled = child_run(path, "faces", tile, overlap)
    print(f"  tiled: {tiled['seconds']:.1f} s", flush=True)
    t0 = time.perf_counter()
    factor = 1024 / max(size)
    small = cv2.resize(image, (round(size[1] * factor), round(size[0] * factor)), interpolation=cv2.INTER_AREA)
    whole = detector.predict(small).boxes / np.float32(factor)
    whole_seconds = time.perf_counter() - t0
    memory = {how: child_run(png if how == "png" else path, "none", tile, overlap, how)
              for how in ("path", "memmap", "array", "png")}
    return {"faces": len(truth), "own_recall": float(own.mean()), "n_own": len(own),
            "tiled_recall": float(matched(truth, tiled["boxes"]).mean()), "tiled_seconds": tiled["seconds"],
            "tiled_peak_mb": tiled["peak_rss_mb"], "tiled_rss_before_mb": tiled["rss_before_mb"],
            "tiles": len(tile_grid(size, tile, overlap)), "whole_recall": float(matched(truth, whole).mean()),
            "whole_seconds": whole_seconds, "memory": memory, "image_mb": image.nbytes / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="images in the throughput folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(8000, 10000), metavar=("H", "W"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--record", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as root:
        print("throughput", flush=True)
        rates = throughput(os.path.join(root, "many"), args.images, args.repeats)
        print("large image", flush=True)
        os.makedirs(os.path.join(root, "large"))
        large = large_image(os.path.join(root, "large"), tuple(args.size), args.tile, args.overlap)
    load_after = os.getloadavg()

    load = (f"load average {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (1 / 5 / 15 min) "
            f"before, {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f} after")
    plain = rates["plain loop"]
    lines = [f"### {datetime.date.today().isoformat()}; {machine()}; {load}", "",
             "The machine is shared: the load average counts other developers' builds and tests "
             "running at the same time, so times are inflated and noisy; ratios within a run are "
             "more telling than absolute figures.", "",
             f"**Many images**: {args.images} faces_in_clutter test PNGs (160-320 px), OpenCV's frontal-face "
             f"cascade as a saved ViolaJonesDetector; median of {args.repeats} interleaved runs, process "
             "start-up and model loading included.", "",
             "| run | images/s | vs plain loop |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.1f} | {rate / plain:.2f}× |" for name, rate in rates.items()]
    m = large["memory"]
    lines += ["", f"**One large image**: {args.size[0]} x {args.size[1]} RGB ({large['image_mb']:.0f} MB), "
              f"faces_in_clutter test images pasted into a grid: {large['faces']} faces of 24-96 px. "
              f"Same detector.", "",
              "| run | time s | recall@0.5 | peak RSS MB |", "|---|---|---|---|",
              f"| predict_tiled from .npy ({large['tiles']} tiles of {args.tile}, overlap {args.overlap}, greedy) | "
              f"{large['tiled_seconds']:.1f} | {large['tiled_recall']:.3f} | {large['tiled_peak_mb']:.0f} "
              f"({large['tiled_rss_before_mb']:.0f} before the call) |",
              f"| whole image shrunk to a longer side of 1024, one predict | {large['whole_seconds']:.1f} | "
              f"{large['whole_recall']:.3f} | – |",
              f"| the detector on the original images ({large['n_own']} faces) | – | {large['own_recall']:.3f} | – |",
              "", "Peak RSS of a child process running predict_tiled over the whole image with a detector "
              "that returns nothing, by input; *before* is the peak before the call (the interpreter with numpy "
              "and pydetect imported, and the image itself where it is loaded first). Measured as the child's "
              "VmHWM: on Linux ru_maxrss carries the parent's peak through fork and exec (it reported the "
              "benchmark process's ~200 MB for every child).", "",
              "| input | before MB | peak MB |", "|---|---|---|"]
    names = {"path": "path to the .npy file (tiles read row by row)",
             "memmap": "np.load(path, mmap_mode='r') (read through its file like the path)",
             "array": "in-memory array (np.load)", "png": "path to a PNG (OpenCV decodes the whole image)"}
    lines += [f"| {names[k]} | {v['rss_before_mb']:.0f} | {v['peak_rss_mb']:.0f} |" for k, v in m.items()] + [""]
    text = "\n".join(lines)
    print("\n" + text)
    if args.record:
        record_section(RESULTS, SECTION, text)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
