"""Detect faces in an image file with an OpenCV cascade and write an annotated PNG.

    python examples/detect_faces.py photo.jpg -o faces.png
    python examples/detect_faces.py astronaut -o faces.png        # scikit-image's sample
    python examples/detect_faces.py photo.jpg --cascade haarcascade_frontalface_alt2.xml \\
        --scale-factor 1.05 --min-neighbors 5 --min-size 40

The cascade is a file name from cv2.data.haarcascades, "lbp" for scikit-image's LBP face
cascade, or a path to any OpenCV cascade XML. Each box is labelled with its neighbour
count (how many raw windows were grouped into it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def read_rgb(path):
    import cv2
    from skimage import data

    if not os.path.exists(path) and hasattr(data, path):
        img = getattr(data, path)()
        return np.dstack([img] * 3) if img.ndim == 2 else img
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read image {path!r}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def cascade_path(name):
    import cv2
    from skimage import data

    if name == "lbp":
        return data.lbp_frontal_face_cascade_filename()
    if os.path.exists(name):
        return name
    shipped = os.path.join(cv2.data.haarcascades, name)
    if os.path.exists(shipped):
        return shipped
    raise SystemExit(f"error: no cascade {name!r} (not a file, not in {cv2.data.haarcascades})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", help="image file, or a scikit-image sample name (e.g. astronaut)")
    ap.add_argument("-o", "--output", default="faces.png", help="annotated PNG to write")
    ap.add_argument("--cascade", default="haarcascade_frontalface_default.xml")
    ap.add_argument("--scale-factor", type=float, default=1.1)
    ap.add_argument("--min-neighbors", type=int, default=3)
    ap.add_argument("--min-size", type=int, default=None, help="smallest face side in pixels")
    args = ap.parse_args(argv)

    import cv2
    from pydetect._io import atomic_write
    from pydetect.cascade import CascadeDetector

    rgb = read_rgb(args.image)
    detector = CascadeDetector(cascade_path(args.cascade))
    t0 = time.perf_counter()
    dets = detector.detect(rgb, scale_factor=args.scale_factor,
                           min_neighbors=args.min_neighbors, min_size=args.min_size)
    ms = (time.perf_counter() - t0) * 1e3
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thick = max(2, round(max(out.shape[:2]) / 300))
    for (x1, y1, x2, y2), n in zip(dets.boxes.astype(int), dets.scores.astype(int)):
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(out, str(n), (x1 + 2, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 + thick * 0.15, (0, 255, 0), max(1, thick // 2), cv2.LINE_AA)
    ok, png = cv2.imencode(".png", out)
    if not ok:
        raise SystemExit("error: PNG encoding failed")
    with atomic_write(args.output, "wb") as f:
        f.write(png.tobytes())
    print(f"{len(dets)} detection(s) in {ms:.1f} ms with {os.path.basename(cascade_path(args.cascade))}"
          f" -> {args.output}")
    for (x1, y1, x2, y2), n in zip(dets.boxes.astype(int), dets.scores.astype(int)):
        print(f"  box ({x1}, {y1}, {x2}, {y2})  neighbours {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
