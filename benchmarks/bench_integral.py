"""pydetect.ops.integral_image vs cv2.integral / integral2 / integral3, pair by pair.

Same uint8 image (pydetect.bench.ops.photo_mosaic), same thread count, a warm-up, then the
median of --repeats rounds. Each round calls both sides once, in turns that swap every
round: the first call after another large allocation may get fresh pages from the kernel
(page faults, about 1.3 ms for an 8 MB table), and a fixed order would charge that to one
side only. Prints one row per case with the ratio pydetect / OpenCV (below 1: faster).

    PYTHONPATH=. python benchmarks/bench_integral.py [--sizes 640x480 1920x1080]
        [--threads 1 2] [--repeats 101]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pydetect import ops
from pydetect.bench.ops import photo_mosaic
from pydetect.bench.timing import load_average, machine, set_threads


def swapped_medians(a, b, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds per call of a and b, called in turns whose order swaps every round."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for r in range(repeats):
        pairs = [(a, ta), (b, tb)] if r % 2 == 0 else [(b, tb), (a, ta)]
        for fn, out in pairs:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["640x480", "1920x1080"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=101)
    args = p.parse_args(argv)
    import cv2

    print(f"# {machine()}; load average {load_average()}; OpenCV {cv2.__version__}")
    print("| image | tables | threads | pydetect ms | OpenCV ms | ratio | equal |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        img = photo_mosaic(w, h)
        # Fewer rounds for large images (each call allocates tens of MB).
        repeats = args.repeats if w * h <= 640 * 480 else max(7, args.repeats // 3)
        for t in args.threads:
            set_threads(t)
            cases = [
                ("sum", lambda: ops.integral_image(img), lambda: cv2.integral(img)),
                ("sum + squared", lambda: ops.integral_image(img, squared=True),
                 lambda: cv2.integral2(img)),
                ("sum + squared + tilted",
                 lambda: ops.integral_image(img, squared=True, tilted=True),
                 lambda: cv2.integral3(img)),
            ]
            for name, ours, peer in cases:
                mine, theirs = ours(), peer()
                mine = mine if isinstance(mine, tuple) else (mine,)
                theirs = theirs if isinstance(theirs, tuple) else (theirs,)
                equal = all(np.array_equal(x, y) for x, y in zip(mine, theirs))
                a, b = swapped_medians(ours, peer, repeats)
                print(f"| {w}x{h} uint8 | {name} | {t} | {a * 1e3:.3f} | {b * 1e3:.3f} | "
                      f"{a / b:.2f}× | {'yes' if equal else 'NO'} |", flush=True)
    print(f"# load average at end {load_average()}")


if __name__ == "__main__":
    main()
