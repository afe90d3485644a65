"""OverFeat's dense evaluation vs the same classifier applied window by window.

One 640x480 image (one pyramid level, padded as OverFeat pads it), pydetect's default
OverFeatNet (44-pixel window, stride 8, 10 classes): ``net.dense(image)`` (the FC layers read
as convolutions, one pass) against ``net(crops)`` on every window of the same grid cut out
explicitly (batches of 512). Same process, same threads, alternating, median after warm-up;
the outputs are checked equal first. The speed-up is compared with the ratio of
multiply-accumulates the two ways need, counted from the layer shapes: dense evaluation
computes each feature once per image position, where window by window recomputes every
position once per window that covers it.

Usage: python benchmarks/bench_overfeat.py [--threads 1 2] [--repeats 5] [--record]
"""

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from pydetect.bench.results import Table
from pydetect.bench.timing import set_threads, time_alternating
from pydetect.models import OverFeatNet

RESULTS = Path(__file__).with_name("RESULTS.md")


def macs(net, height, width):
    """Multiply-accumulates of net.dense on a height x width image, and of net on one window."""
    def count(h, w):
        total, c = 0, 3
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):
                h, w = h - 2, w - 2
                total += h * w * m.out_channels * c * 9
                c = m.out_channels
            elif isinstance(m, torch.nn.MaxPool2d):
                h, w = h // 2, w // 2
        k = net.feature_side
        h, w = h - k + 1, w - k + 1
        hidden = net.fc1.out_features
        total += h * w * (c * k * k * hidden + hidden * hidden + hidden * (net.cls.out_features + net.reg.out_features))
        return total
    return count(height, width), count(net.window, net.window)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = OverFeatNet(10).eval()
    pad = 24  # OverFeat(window=44)._pad
    x = torch.randn(1, 3, 480 + 2 * pad, 640 + 2 * pad)
    mh, mw = net.output_size(*x.shape[-2:])
    s, w = net.stride, net.window
    padded = torch.nn.functional.pad(x, (0, w, 0, w))
    corners = [(s * i, s * j) for i in range(mh) for j in range(mw)]

    def windows():
        out = []
        for b in range(0, len(corners), 512):
            crops = torch.cat([padded[:, :, y:y + w, xx:xx + w] for y, xx in corners[b:b + 512]])
            out.append(net(crops)[0])
        return torch.cat(out)

    def dense():
        return net.dense(x)[0]

    with torch.no_grad():
        d = dense()[0].permute(1, 2, 0).reshape(-1, 11)
        np.testing.assert_allclose(d.numpy(), windows().numpy(), rtol=1e-3, atol=1e-4)
        dense_macs, window_macs = macs(net, *x.shape[-2:])
        mac_ratio = window_macs * len(corners) / dense_macs
        print(f"{len(corners)} windows ({mh} x {mw}); MACs dense {dense_macs / 1e9:.2f} G, window by window "
              f"{window_macs * len(corners) / 1e9:.2f} G: {mac_ratio:.1f}x")
        table = Table("OverFeat dense evaluation vs window by window, 640x480 + padding, stride 8")
        for n in args.threads:
            set_threads(n)
            t = time_alternating({"dense": dense, "windows": windows}, repeats=args.repeats, warmup=1)
            table.add(f"{len(corners)} windows of 44 px", n, t["dense"], "same net, window by window", t["windows"])
    notes = (f"Default OverFeatNet (widths 16/32/64, 128 hidden, 10 classes), random weights (time does not "
             f"depend on them), outputs checked equal. {len(corners)} windows at stride 8 on the padded "
             f"{x.shape[-1]}x{x.shape[-2]} level. Multiply-accumulates: dense {dense_macs / 1e9:.2f} G, window by "
             f"window {window_macs * len(corners) / 1e9:.2f} G ({mac_ratio:.1f}x): a 44-pixel window at stride 8 "
             f"overlaps its neighbours, so each first-layer position is computed for up to (44/8)^2 ~ 30 windows "
             f"when windows are cut out; dense evaluation computes it once. {os.cpu_count()} cores.")
    print(table.markdown(notes))
    if args.record:
        table.record(RESULTS, "overfeat dense evaluation (issue 21)", notes)


if __name__ == "__main__":
    main()
