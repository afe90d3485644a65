"""pydetect: classical and CNN object detection side by side, on a fast C++ core.

Boxes everywhere are float ``(x1, y1, x2, y2)`` in absolute pixels, ``x2 - x1`` being the
width (no +1), as in torchvision and pycocotools.
"""

__version__ = "0.1.0"

try:
    from pydetect import _C  # noqa: F401  (only checks that the build imports)
except ImportError as exc:  # most often: the source tree shadows the installed package
    import os as _os

    raise ImportError(
        f"pydetect's C++ extension (pydetect._C) is not importable from {_os.path.dirname(__file__)}: "
        "install the package (pip install .) and run outside the source tree, or build it in place "
        "(cmake -S . -B build/dev && cmake --build build/dev)"
    ) from exc
from pydetect._validation import check_int as _check_int
from pydetect.structures import Detections
from pydetect import ops
from pydetect.ops import _runtime
from pydetect.ops._library import cuda_is_available


#: Most threads :func:`set_num_threads` accepts (1024): far above the core counts the
#: kernels scale to, low enough that a slip cannot ask the system for a million threads.
MAX_NUM_THREADS = _runtime.MAX_NUM_THREADS


def set_num_threads(n: int) -> None:
    """Sets how many threads pydetect's C++ kernels use (default: all cores).

    Parameters
    ----------
    n : int in [1, MAX_NUM_THREADS]
        Number of threads. It applies process-wide to every kernel; torch's own thread
        count (``torch.set_num_threads``) is separate. If the system refuses to start some
        of them (a thread limit), a kernel runs on the threads it got.
    """
    _runtime.set_num_threads(_check_int(n, "n", minimum=1, maximum=MAX_NUM_THREADS))


def get_num_threads() -> int:
    """Returns how many threads pydetect's C++ kernels use."""
    return _runtime.get_num_threads()


__all__ = ["Detections", "ops", "set_num_threads", "get_num_threads", "cuda_is_available", "MAX_NUM_THREADS",
           "__version__"]
