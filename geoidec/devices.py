"""Which device a command runs on."""

from __future__ import annotations

import torch

from geoidec.errors import DataError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; a clear error for unavailable CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {name} asked for CUDA but no GPU is available; use cpu")
    return device
