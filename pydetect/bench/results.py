"""Benchmark results as markdown: a table of timings and the sections of a results file.

The scripts in ``benchmarks/`` print their tables and, with ``--record``, write each into
``benchmarks/RESULTS.md`` as one ``## section`` per comparison: a rerun replaces its own
section in place and leaves the others alone. The results file is always passed in; a script
passes the RESULTS.md beside it, ``Path(__file__).with_name("RESULTS.md")``, so that results
land in the checkout the script was run from, wherever the imported pydetect lives.
"""

from __future__ import annotations

import datetime
import os

from pydetect._io import atomic_write
from pydetect.bench.timing import machine

__all__ = ["Table", "record_section"]

# What a results file starts with when a script records into one that does not exist yet.
_NEW_FILE = "# Benchmark results\n\n"


def record_section(path, section: str, body: str) -> None:
    """Writes ``## section`` followed by ``body`` into the markdown file ``path``.

    An existing ``## section`` (up to the next ``## `` heading) is replaced where it stands;
    otherwise the section is appended. The file is rewritten atomically (a reader sees the old
    or the new file, never half of one) and created if missing.
    """
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else _NEW_FILE
    block = f"## {section}\n\n" + body.rstrip("\n") + "\n\n"
    marker = f"## {section}\n"
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + len(marker))
        text = text[:start] + block + (text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


class Table:
    """Rows of (case, threads, pydetect ms, peer name, peer ms, ratio), printed as markdown."""

    def __init__(self, title: str):
        self.title = title
        self.rows = []

    def add(self, case: str, threads: int, ours: float, peer: str | None = None, theirs: float | None = None):
        """Adds (and prints) one row; ``ours`` and ``theirs`` are seconds per call."""
        ratio = f"{ours / theirs:.2f}×" if theirs else "–"
        row = (case, str(threads), f"{ours * 1e3:.3f}", peer or "–",
               f"{theirs * 1e3:.3f}" if theirs else "–", ratio)
        self.rows.append(row)
        print(" | ".join(row), flush=True)

    def markdown(self, notes: str = "") -> str:
        """The table under a ``### title (date; machine)`` heading, with ``notes`` above it."""
        head = "| case | threads | pydetect ms | peer | peer ms | ratio |\n|---|---|---|---|---|---|\n"
        body = "".join("| " + " | ".join(r) + " |\n" for r in self.rows)
        date = datetime.date.today().isoformat()
        return f"### {self.title} ({date}; {machine()})\n\n{notes}\n\n{head}{body}\n"

    def record(self, path, section: str, notes: str = "") -> None:
        """Replaces (or appends) ``## section`` of the results file ``path`` with this table."""
        record_section(path, section, self.markdown(notes))
