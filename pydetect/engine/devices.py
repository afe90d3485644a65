"""Devices and processes of CNN training: torch's thread count, torchrun's process group,
and the ``device`` parameter resolved to the GPU a process should use."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from pydetect._validation import check_device

__all__ = ["torch_threads", "distributed_info", "resolve_device"]


@contextlib.contextmanager
def torch_threads(n):
    """Runs the block with ``torch.set_num_threads(n)`` (``None``: unchanged), then restores it."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def distributed_info(device=None):
    """(rank, world_size); under torchrun, starts the process group when needed: NCCL when
    training on a GPU (``device`` of type cuda, which becomes the process's current CUDA
    device: :func:`resolve_device` makes ``"cuda"`` cuda:LOCAL_RANK), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1

    if not dist.is_initialized():
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.set_device(torch.device(device))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def resolve_device(device, name="device") -> torch.device:
    """The torch.device a CNN detector's ``device`` parameter names, checked for use now.

    ``"cuda"`` without an index is the process's GPU: cuda:LOCAL_RANK under torchrun (one
    GPU per process), else torch's current CUDA device.

    Raises
    ------
    TypeError, ValueError
        Not a device name or torch.device (:func:`pydetect._validation.check_device`); a
        CUDA device when torch sees no GPU, or one beyond the GPUs it sees.
    """
    d = check_device(device, name)
    if d.type != "cuda":
        return d
    if not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} but CUDA is not available (torch.cuda.is_available() is False: "
                         f"no GPU or driver, or a CPU-only torch build); use {name}='cpu'")
    index = d.index
    if index is None:
        local_rank = os.environ.get("LOCAL_RANK")
        index = int(local_rank) if local_rank is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ValueError(f"{name}={device!r} names CUDA device {index}, but torch sees {count} "
                         f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)
