"""Timing rules shared by every benchmark: same input, same thread count, warm-up, median.

Peers and pydetect are timed alternately in one process, so a machine that gets busier or
quieter during the run affects both sides alike; ratios are pydetect / peer (below 1 means
pydetect is faster).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import cv2
import torch

import pydetect

__all__ = ["set_threads", "time_alternating", "median_time", "machine", "load_average"]


def set_threads(n: int) -> None:
    """Sets the thread count of pydetect, torch and OpenCV (the peers with a thread setting)."""
    pydetect.set_num_threads(n)
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def time_alternating(fns: dict, repeats: int = 7, warmup: int = 1, min_time: float = 0.0) -> dict:
    """Median seconds per call of each function, calls interleaved round by round (the order
    rotating from round to round)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    names = list(fns)
    rounds = 0
    start = time.perf_counter()
    while rounds < repeats or time.perf_counter() - start < min_time:
        # Rotate who goes first: the first call of a round inherits the previous call's freed
        # memory (page faults on fresh pages, cold caches), which must not always hit one side.
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}


def median_time(fn, repeats: int = 7, warmup: int = 1) -> float:
    """Median seconds per call of one function, after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line naming the CPU architecture, the core count and the Python version."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): a busy machine inflates times."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
