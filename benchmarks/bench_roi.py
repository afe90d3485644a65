"""pydetect.ops.roi_align / roi_pool vs torchvision.ops on CPU, same process, same threads.

Setting of issue 7: features (2, 256, 50, 68), 512 RoIs per image, 7x7 output,
sampling_ratio 2, aligned=True. Forward and backward (gradient of the input, graph kept) timed
separately; median of --repeat runs after one warm-up. Run with torchvision importable:

    PYTHONPATH=. /work/venv-tv/bin/python benchmarks/bench_roi.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import pydetect
from pydetect import ops
from pydetect.bench.ops import roi_problem


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import torchvision.ops as tv

    torch.set_num_threads(args.threads)
    pydetect.set_num_threads(args.threads)
    x, boxes, scale = roi_problem()
    k = sum(len(b) for b in boxes)
    grad = torch.randn(k, x.shape[1], 7, 7)
    rows = []

    def bench(name, ours, theirs):
        # Interleave: ours, theirs, ours, theirs ... to share the machine's load fairly.
        t_ours, t_tv = [], []
        ours(); theirs()
        for _ in range(args.repeat):
            t0 = time.perf_counter(); ours(); t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); theirs(); t_tv.append(time.perf_counter() - t0)
        mo, mt = statistics.median(t_ours), statistics.median(t_tv)
        rows.append((name, mo, mt))
        print(f"{name:28s} pydetect {mo * 1e3:8.1f} ms  torchvision {mt * 1e3:8.1f} ms  ratio {mo / mt:5.2f}")

    def fwd(fn, **kw):
        return lambda: fn(x, boxes, 7, spatial_scale=scale, **kw)

    def bwd(fn, **kw):
        # Backward alone: one forward, then the gradient of the input with the graph kept.
        xg = x.clone().requires_grad_(True)
        out = fn(xg, boxes, 7, spatial_scale=scale, **kw)
        return lambda: torch.autograd.grad(out, xg, grad, retain_graph=True)

    with torch.no_grad():
        bench("roi_align forward", fwd(ops.roi_align, sampling_ratio=2, aligned=True),
              fwd(tv.roi_align, sampling_ratio=2, aligned=True))
    bench("roi_align backward", bwd(ops.roi_align, sampling_ratio=2, aligned=True),
          bwd(tv.roi_align, sampling_ratio=2, aligned=True))
    with torch.no_grad():
        bench("roi_pool forward", fwd(ops.roi_pool), fwd(tv.roi_pool))
    bench("roi_pool backward", bwd(ops.roi_pool), bwd(tv.roi_pool))
    print(f"threads={args.threads}, K={k} RoIs, input {tuple(x.shape)}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
