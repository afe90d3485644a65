"""pydetect's CUDA ops vs torchvision's on one GPU, and Faster R-CNN training steps on it.

Same input, same process, timed alternately (median of --repeat runs after a warm-up; each
call ends with torch.cuda.synchronize()); ratios are pydetect / torchvision, below 1 is faster.
Cases: nms on 10,000 clustered boxes (IoU 0.5); roi_align forward and backward on bench_roi.py's
setting (features (2, 256, 50, 68), 512 RoIs per image, 7x7, sampling_ratio 2, aligned) and on a
stride-8 map (2, 256, 100, 136); then FasterRCNN(device="cuda") training iterations on the
built-in digits. Needs a GPU, torch with CUDA, pydetect built with its CUDA kernels
(benchmarks/gpu_check.sh builds it) and pydetect's torch-op registration (pydetect.ops on CUDA
tensors, pydetect.cuda_is_available()); torchvision is optional (its columns are skipped).

    PYTHONPATH=. python benchmarks/bench_cuda.py [--repeat 7]
"""

from __future__ import annotations

import argparse

import torch

import pydetect
from pydetect import ops
from pydetect.bench.ops import clustered_boxes, roi_problem
from pydetect.bench.timing import time_alternating


def synced(fn):
    def call():
        fn()
        torch.cuda.synchronize()
    return call


def compare(title, fns, repeat):
    times = time_alternating({name: synced(fn) for name, fn in fns.items()}, repeats=repeat)
    ours = times["pydetect"]
    line = f"{title}: pydetect {ours * 1e3:.3f} ms"
    if "torchvision" in times:
        line += f", torchvision {times['torchvision'] * 1e3:.3f} ms, ratio {ours / times['torchvision']:.2f}x"
    print(line, flush=True)


def bench_nms(tv, repeat):
    boxes, scores, _ = clustered_boxes(10_000, seed=0)
    boxes, scores = torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda()
    fns = {"pydetect": lambda: ops.nms(boxes, scores, 0.5)}
    if tv is not None:
        fns["torchvision"] = lambda: tv.nms(boxes, scores, 0.5)
        same = torch.equal(ops.nms(boxes, scores, 0.5).cpu(), tv.nms(boxes, scores, 0.5).cpu())
        print(f"nms: same kept boxes as torchvision: {same}")
    compare("nms 10,000 clustered boxes", fns, repeat)


def bench_roi_align(tv, repeat, h, w, stride):
    x, boxes, scale = roi_problem(h=h, w=w, stride=stride)
    x, boxes = x.cuda(), [b.cuda() for b in boxes]
    args = (7, scale, 2, True)
    case = f"roi_align {tuple(x.shape)}, {sum(len(b) for b in boxes)} RoIs"
    fns = {"pydetect": lambda: ops.roi_align(x, boxes, *args)}
    if tv is not None:
        fns["torchvision"] = lambda: tv.roi_align(x, boxes, *args)
        diff = (ops.roi_align(x, boxes, *args) - tv.roi_align(x, boxes, *args)).abs().max().item()
        print(f"{case}: largest difference from torchvision {diff:.2e}")
    compare(case + " forward", fns, repeat)

    xg = x.detach().requires_grad_(True)
    outs = {"pydetect": ops.roi_align(xg, boxes, *args)}
    if tv is not None:
        outs["torchvision"] = tv.roi_align(xg, boxes, *args)
    grad_out = torch.randn_like(outs["pydetect"])
    grads = {name: (lambda out=out: torch.autograd.grad(out, xg, grad_out, retain_graph=True))
             for name, out in outs.items()}
    if tv is not None:
        diff = (grads["pydetect"]()[0] - grads["torchvision"]()[0]).abs().max().item()
        print(f"{case}: largest gradient difference from torchvision {diff:.2e}")
    compare(case + " backward", grads, repeat)


def bench_training(steps):
    from pydetect.data import digits_in_clutter
    from pydetect.detectors import FasterRCNN

    data = digits_in_clutter("train", n_images=8, seed=0)
    det = FasterRCNN(device="cuda", pretrain=None, max_iter=steps, train_seconds=600, progress=False)
    det.fit(data)
    h = det.history_
    print(f"FasterRCNN(device='cuda'): {h['iterations']} training iterations (batch 2) in {h['seconds']:.2f} s, "
          f"{h['seconds'] / h['iterations'] * 1e3:.1f} ms per iteration (the first includes cuDNN's set-up); "
          f"last loss {h['losses'][-1]:.3f}")
    d = det.predict(data[0][0])
    print(f"FasterRCNN(device='cuda').predict: {len(d)} detections")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="Faster R-CNN training iterations")
    args = parser.parse_args()
    if not pydetect.cuda_is_available():
        raise SystemExit("pydetect.cuda_is_available() is False: needs a GPU and pydetect built with CUDA")
    try:
        import torchvision.ops as tv
    except ImportError:
        tv = None
        print("torchvision is not installed: its columns are skipped")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    bench_nms(tv, args.repeat)
    bench_roi_align(tv, args.repeat, 50, 68, 16.0)
    bench_roi_align(tv, args.repeat, 100, 136, 8.0)
    bench_training(args.steps)


if __name__ == "__main__":
    main()
