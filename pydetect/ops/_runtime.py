"""Process-wide settings of the C++ kernels: thread count and SIMD level.

``pydetect.set_num_threads`` / ``get_num_threads`` validate and document the thread count;
this module is their one route to ``pydetect._C``.
"""

from __future__ import annotations

from pydetect import _C

__all__ = ["simd_level", "MAX_NUM_THREADS", "get_num_threads", "set_num_threads"]

#: Most threads the kernels accept (csrc/common/parallel.h).
MAX_NUM_THREADS: int = _C.MAX_NUM_THREADS


def get_num_threads() -> int:
    """Number of threads the kernels use."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the kernels' thread count (``n`` already validated, in [1, MAX_NUM_THREADS])."""
    _C.set_num_threads(int(n))


def simd_level() -> str:
    """The widest SIMD code path pydetect's C++ kernels run: ``"avx2"``, ``"sse2"`` or ``"scalar"``.

    The CPU's widest unless the environment variable ``PYDETECT_SIMD`` (``auto``, the
    default, ``avx2``, ``sse2`` or ``scalar``) asks for less; a level the CPU lacks falls back
    to the widest it has. The variable is read once, when ``pydetect`` is first imported; an
    unknown value gives a ``RuntimeWarning`` naming it and the accepted values, and ``auto``.
    Every level computes the same results (the vector paths are exact); forcing a narrower one
    makes its code run, e.g. to test it on a machine that would otherwise skip it.

    Returns
    -------
    str
        ``"avx2"`` (x86 CPUs with AVX2), ``"sse2"`` (the 128-bit vector paths: SSE2 on x86,
        the compiler's 128-bit vectors elsewhere) or ``"scalar"`` (plain C++ loops).
    """
    return _C.simd_level().name.lower()
