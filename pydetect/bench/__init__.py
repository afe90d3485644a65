"""Benchmarks run by ``pydetect bench``, and the library the scripts in ``benchmarks/`` build on.

- :mod:`pydetect.bench.timing`: the shared timing rules (same thread count, warm-up, median of
  repeats, peer and pydetect interleaved in one process);
- :mod:`pydetect.bench.ops`: pydetect's ops against the installed peer libraries, and the
  generated benchmark inputs;
- :mod:`pydetect.bench.detectors`: classical and CNN detectors trained and evaluated on the
  same split, with a report;
- :mod:`pydetect.bench.results`: markdown tables and the ``## sections`` of a results file.

The scripts in ``benchmarks/`` (one per comparison) are run from the repository root as
``PYTHONPATH=. python benchmarks/<script>.py``; with ``--record`` they write their section of
the ``benchmarks/RESULTS.md`` beside them (see ``benchmarks/README.md``).
"""
