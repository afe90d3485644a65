"""Atomic file writes: a reader never sees a half-written model, report or JSON file."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

_TMP_SUFFIX = ".tmp"


def _stale_temp_files(path):
    """Temporary files of ``path`` left by writers killed before they could remove them
    (``<name>.<8 mkstemp characters>.tmp`` beside it; nothing else matches)."""
    directory, name = os.path.split(path)
    own = re.compile(re.escape(name) + r"\.[a-z0-9_]{8}" + re.escape(_TMP_SUFFIX))
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if own.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                yield entry.path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", **open_kwargs):
    """Opens a temporary file next to ``path`` and renames it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was. A process
    killed outright (SIGKILL, power loss) leaves its temporary file behind: the next write
    of ``path`` removes it (a file has one writer at a time; a concurrent writer of the same
    path would see its temporary file vanish and fail).
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    for stale in _stale_temp_files(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
