"""Which device a command runs on, and this process's place among several (DDP)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from geoidec.errors import DataError

__all__ = ["all_reduce_sum", "barrier", "rank_and_world", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; a clear error for unavailable CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {name} asked for CUDA but no GPU is available; use cpu")
    return device


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_and_world() -> tuple[int, int]:
    """This process's global rank and the number of processes (0, 1 outside DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(array: np.ndarray, device: torch.device) -> np.ndarray:
    """Element-wise sum of ``array`` over every process (itself outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return array
    target = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(target)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()
