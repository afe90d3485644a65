"""Shared benchmark harness: same input, same thread count, warm-up, median of repeats.

Peers and pydetect are timed alternately in one process, so a machine that gets busier or
quieter during the run affects both sides alike; the printed ratio is pydetect / peer
(below 1 means pydetect is faster).
"""

from __future__ import annotations

import datetime
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")

from pydetect.bench.timing import machine, median_time, set_threads, time_alternating  # noqa: F401


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
