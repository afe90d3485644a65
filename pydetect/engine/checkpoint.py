"""Training checkpoints: written atomically with torch.save, read back with
``weights_only=True`` (tensors and plain containers only, so a crafted file cannot run code)."""

from __future__ import annotations

import contextlib

import torch

from pydetect._io import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "restoring", "cuda_rng_state", "restore_cuda_rng"]


def save_checkpoint(path, state):
    """Writes ``state`` to ``path`` atomically (a temporary file, then a rename)."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def cuda_rng_state(device) -> dict:
    """``{"cuda_rng": state}`` of ``device``'s CUDA generator (dropout and other random ops
    on the GPU draw from it, not from the CPU's) when training on a GPU; ``{}`` otherwise."""
    device = torch.device(device)
    return {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}


def restore_cuda_rng(state, device) -> None:
    """Restores a checkpoint's ``"cuda_rng"`` onto ``device`` when it trains on a GPU. A
    checkpoint from a CPU run has none (the device's generator keeps its state), and on a CPU
    one from a GPU run is ignored: there the GPU's random stream is not used."""
    device = torch.device(device)
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def load_checkpoint(path) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (a training state or a pretrained backbone), read with
    ``torch.load(weights_only=True)``: tensors, numbers, strings and plain containers only,
    so a crafted file cannot run code. Raises ValueError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch.load's errors on a malformed file are of many undocumented types
        raise ValueError(f"{path}: not a pydetect checkpoint ({type(exc).__name__}); only tensors and plain "
                         "containers are read from checkpoints, so nothing in the file was run") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a pydetect checkpoint (holds a {type(state).__name__}, not a dict)")
    return state


@contextlib.contextmanager
def restoring(path):
    """Turns a checkpoint that does not fit what is resumed (missing keys, other shapes)
    into a ValueError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())  # torch's load_state_dict errors span lines
        raise ValueError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {detail}); "
                         "delete it or pass resume=False to start afresh") from None
