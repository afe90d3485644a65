"""RoI ops on every input class vs torchvision, integral-image bandwidth vs copies (issue 23).

    PYTHONPATH=. python benchmarks/bench_roi_integral.py [--threads 1 2] [--before before.json ...]
        [--json out.json] [--record] [--note "..."] [--from-json out.json --commit HASH]

Runs the ``roi`` and ``integral`` families of ``pydetect bench ops`` (pydetect.bench.ops: the
RoI input classes of ROI_CASES / roi_boxes, the integral images next to copies of as many
bytes) at each thread count and prints two tables:

- RoIAlign / RoI pool forward and backward per input class: pydetect ms, torchvision ms,
  ratio, and the target of issue 23 (forward <= 0.5x and backward <= 0.3x torchvision on the
  realistic case, roi_problem's boxes; <= 1.0x on every other class);
- integral images (sum, + squared, + tilted; 640x480, 1920x1080, 4096x4096): effective
  bandwidth (image read once + tables written once, per second) next to ``np.copyto`` of as
  many bytes into a preallocated array and a copy into a new array.

``--before`` takes the ``--json`` output of an earlier run (e.g. of the previous commit) and
adds its pydetect times and ratios as "before" columns. torchvision is an optional peer: the
RoI table needs it importable (run from a venv that has it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from pydetect.bench.ops import run_op_benchmarks
from pydetect.bench.results import record_section

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "RoI ops corner cases and integral-image bandwidth (issue 23)"
REALISTIC = "inside:"  # roi_problem's boxes, sampling_ratio 2, aligned=True (the realistic case)


def _target(case: str) -> float:
    realistic = f"roi_align forward, {REALISTIC}" in case or f"roi_align backward, {REALISTIC}" in case
    if realistic:
        return 0.5 if "forward" in case else 0.3
    return 1.0


def _fmt(ms) -> str:
    return "–" if ms is None else f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def roi_table(rows, before) -> str:
    out = ["| case | threads | before: pydetect ms | before: ratio | pydetect ms | torchvision ms | ratio | target | met |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["family"] != "roi":
            continue
        b = before.get((r["case"], r["threads"]))
        target = _target(r["case"])
        case = r["case"].replace(": features (2, 256, 50, 68)", "").replace(", 7x7", "")
        if r["note"] and "sampling_ratio" in r["note"]:
            case += f" ({r['note'].split(';')[0]})"
        b_ms, b_ratio = (_fmt(b["ours_ms"]), f"{b['ratio']:.2f}") if b else ("–", "–")
        met = "yes" if r["ratio"] <= target else "**no**"
        out.append(f"| {case} | {r['threads']} | {b_ms} | {b_ratio} | {_fmt(r['ours_ms'])} | {_fmt(r['peer_ms'])} | "
                   f"{r['ratio']:.2f} | <= {target} | {met} |")
    return "\n".join(out)


def integral_table(rows, before) -> str:
    out = ["| case | threads | MB read + written | before: pydetect ms | pydetect ms | pydetect GB/s | copyto ms | "
           "copyto GB/s | ratio to copyto | new-array copy ms | new-array copy GB/s | ratio to new-array copy |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    pairs = {}
    for r in rows:
        if r["family"] == "integral" and r["case"].endswith(", bandwidth"):
            pairs.setdefault((r["case"], r["threads"]), {})[r["peer"]] = r
    for (case, threads), by_peer in pairs.items():
        pre = by_peer["numpy copyto (same bytes, preallocated)"]
        new = by_peer["numpy copy (same bytes, new array)"]
        mb = float(pre["note"].split(" MB")[0])
        b = before.get((case, threads))
        out.append(f"| {case.replace(', bandwidth', '')} | {threads} | {mb:.1f} | {_fmt(b['ours_ms']) if b else '–'} | "
                   f"{_fmt(pre['ours_ms'])} | "
                   f"{mb / pre['ours_ms']:.1f} | {_fmt(pre['peer_ms'])} | {mb / pre['peer_ms']:.1f} | "
                   f"{pre['ratio']:.2f} | {_fmt(new['peer_ms'])} | {mb / new['peer_ms']:.1f} | "
                   f"{new['ours_ms'] / new['peer_ms']:.2f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--families", nargs="+", default=["roi", "integral"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", nargs="+", help="JSON of earlier runs (--json) for the before columns")
    parser.add_argument("--json", help="write this run's report as JSON")
    parser.add_argument("--record", action="store_true", help=f"write the tables to {RESULTS.name}")
    parser.add_argument("--note", default="", help="a remark recorded with the tables")
    parser.add_argument("--from-json", help="render (and --record) a run saved with --json instead of running")
    parser.add_argument("--commit", help="commit the timed build came from (default: git HEAD)")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            report = json.load(f)
    else:
        result = run_op_benchmarks(args.families, threads=args.threads, repeats=args.repeats)
        if args.json:
            result.write_json(args.json)
        report = result.to_dict()
    before = {}
    for path in args.before or []:
        with open(path, encoding="utf-8") as f:
            before.update({(r["case"], r["threads"]): r for r in json.load(f)["rows"]})
    commit = args.commit
    if commit is None:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "?"
    text = render(report, before, commit, args.note)
    print(text)
    if args.record:
        record_section(RESULTS, SECTION, text)


def render(report: dict, before: dict, commit: str, note: str = "") -> str:
    """The section's text from a report (OpReport.to_dict()) and the before rows by (case, threads)."""
    rows = report["rows"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    head = (f"{report['date']}; {report['machine']} (nproc {os.cpu_count()}); load average "
            f"{report['load_start']:.1f} at start, {report['load_end']:.1f} at end; {report['seconds']:.0f} s; "
            f"commit {commit}; versions: {versions}.")
    body = [head, ""]
    if note:
        body += [note, ""]
    if any(r["family"] == "roi" for r in rows):
        body += ["RoIAlign / RoI pool, median ms per call (pydetect and torchvision interleaved, same threads); "
                 "ratio = pydetect / torchvision.", "", roi_table(rows, before), ""]
    if any(r["family"] == "integral" for r in rows):
        body += ["Integral images (uint8 photo mosaic, default table types): effective bandwidth = (image bytes "
                 "+ table bytes) / time, next to copies of as many bytes read + written.", "",
                 integral_table(rows, before), ""]
    if report["missing"]:
        body += [f"Peers not installed: {', '.join(report['missing'])}.", ""]
    return "\n".join(body)

if __name__ == "__main__":
    main()
