"""Region proposals of a training set, computed once and kept with the checkpoints."""

from __future__ import annotations

import os

import numpy as np

from pydetect._io import atomic_write
from pydetect.engine.progress import progress_bar

__all__ = ["cached_proposals"]


def cached_proposals(images, search, checkpoint_dir=None, resume=False, progress=False) -> list:
    """Proposals of every image as (P, 4) float32 arrays, ``search(image)`` per image.

    With a ``checkpoint_dir`` they are saved there (``proposals.npz``, atomically) and, when
    ``resume`` is set and the file exists, loaded instead of recomputed: selective search is
    the slowest step of R-CNN and Fast R-CNN training.
    """
    path = os.path.join(checkpoint_dir, "proposals.npz") if checkpoint_dir else None
    if path and resume and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            return [z[f"p{i}"] for i in range(len(images))]
    bar = progress_bar(len(images), "selective search", progress)
    props = []
    for image in images:
        props.append(np.asarray(search(image), np.float32).reshape(-1, 4))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if path:
        with atomic_write(path, "wb") as f:
            np.savez(f, **{f"p{i}": p for i, p in enumerate(props)})
    return props
