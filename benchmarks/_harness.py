"""Shared benchmark harness: same input, same thread count, warm-up, median of repeats.

Peers and pydetect are timed alternately in one process, so a machine that gets busier or
quieter during the run affects both sides alike; the printed ratio is pydetect / peer
(below 1 means pydetect is faster).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")


def set_threads(n: int) -> None:
    """Sets the thread count of pydetect and of every installed peer that has one."""
    import pydetect

    pydetect.set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass


def time_alternating(fns: dict, repeats: int = 7, warmup: int = 1, min_time: float = 0.0) -> dict:
    """Median seconds per call of each function, calls interleaved round by round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    rounds = 0
    start = time.perf_counter()
    while rounds < repeats or time.perf_counter() - start < min_time:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
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
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


class Table:
    """Rows of (case, threads, pydetect ms, peer name, peer ms, ratio), printed as markdown."""

    def __init__(self, title: str):
        self.title = title
        self.rows = []

    def add(self, case: str, threads: int, ours: float, peer: str | None = None, theirs: float | None = None):
        ratio = f"{ours / theirs:.2f}×" if theirs else "–"
        row = (case, str(threads), f"{ours * 1e3:.3f}", peer or "–",
               f"{theirs * 1e3:.3f}" if theirs else "–", ratio)
        self.rows.append(row)
        print(" | ".join(row), flush=True)

    def markdown(self, notes: str = "") -> str:
        head = "| case | threads | pydetect ms | peer | peer ms | ratio |\n|---|---|---|---|---|---|\n"
        body = "".join("| " + " | ".join(r) + " |\n" for r in self.rows)
        date = datetime.date.today().isoformat()
        return f"### {self.title} ({date}; {machine()})\n\n{notes}\n\n{head}{body}\n"

    def record(self, section: str, notes: str = "") -> None:
        """Replaces (or appends) `## section` in RESULTS.md with this table, atomically."""
        sys.path.insert(0, ROOT)
        from pydetect._io import atomic_write

        text = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n\n"
        block = f"## {section}\n\n{self.markdown(notes)}"
        marker = f"## {section}\n"
        if marker in text:
            start = text.index(marker)
            nxt = text.find("\n## ", start + len(marker))
            text = text[:start] + block + (text[nxt + 1:] if nxt >= 0 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + block
        with atomic_write(RESULTS, "w") as f:
            f.write(text)
