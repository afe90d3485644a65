"""Benchmarks run by ``pydetect bench``: detectors against each other, ops against their peers.

- :mod:`pydetect.bench.timing`: the shared timing rules (same thread count, warm-up, median of
  repeats, peer and pydetect interleaved in one process);
- :mod:`pydetect.bench.ops`: pydetect's ops against the installed peer libraries;
- :mod:`pydetect.bench.detectors`: classical and CNN detectors trained and evaluated on the
  same split, with a report.
"""
