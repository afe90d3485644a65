"""Run a snippet of Python in a child interpreter, so that a crash fails one test
instead of killing the whole suite.

Crash-class tests (extreme sizes, INT_MAX / NaN / 2**63 inputs reaching C++) use this: a
segfault or abort in the child shows up as a negative return code, which the helper turns
into a test failure with the signal named and the child's output attached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest


def _child_env():
    import pydetect

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(pydetect.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent] + sys.path))


def run_isolated(code: str, *, timeout: float = 120.0) -> str:
    """Runs ``code`` in a fresh interpreter; returns its stdout.

    The test fails if the child is killed by a signal (segfault, abort), hangs past
    ``timeout`` seconds, or exits non-zero (an uncaught exception, with its traceback).
    Snippets assert what they expect themselves, e.g. with ``pytest.raises``.
    """
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, env=_child_env(), cwd=os.path.dirname(__file__))
    except subprocess.TimeoutExpired:
        pytest.fail(f"child interpreter hung for more than {timeout} s")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"child interpreter crashed with {name}\n--- stderr ---\n{done.stderr[-4000:]}")
    if done.returncode != 0:
        pytest.fail(f"child interpreter exited with {done.returncode}\n--- stderr ---\n{done.stderr[-4000:]}")
    return done.stdout
