"""Lookup tables over 8-bit labels: the blank table that every label mapping starts from and
:func:`remap`, which applies a table to a numpy array or torch tensor of labels."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from geoidec.constants import BACKGROUND, IGNORE_INDEX

__all__ = ["LUT_SIZE", "blank_lut", "remap"]

#: Entries of a lookup table: one per 8-bit label value.
LUT_SIZE = 256

LabelT = TypeVar("LabelT", np.ndarray, torch.Tensor)


def blank_lut() -> np.ndarray:
    """A writable (256,) uint8 lookup table: background -> 0, every other value -> 255
    (ignore), for the caller to fill in its classes."""
    lut = np.full(LUT_SIZE, IGNORE_INDEX, dtype=np.uint8)
    lut[BACKGROUND] = BACKGROUND
    return lut


def remap(labels: LabelT, lut: np.ndarray | torch.Tensor) -> LabelT:
    """Apply a (256,) lookup table to an integer label array or tensor: ``out = lut[labels]``.

    Works on numpy arrays and torch tensors (any device) of any integer dtype and returns the
    same type, dtype, shape and device. Values outside ``0..255`` (possible in int64 labels)
    become ``IGNORE_INDEX``.
    """
    if isinstance(labels, torch.Tensor):
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"remap needs integer labels, got a tensor of {labels.dtype}")
        table = torch.as_tensor(np.asarray(lut) if not isinstance(lut, torch.Tensor) else lut)
        if table.shape != (LUT_SIZE,):
            raise ValueError(f"lookup table must have shape (256,), got {tuple(table.shape)}")
        table = table.to(device=labels.device, dtype=torch.int64)
        index = labels.long()
        if labels.dtype == torch.uint8:
            return table[index].to(labels.dtype)
        inside = (index >= 0) & (index < LUT_SIZE)
        out = torch.where(inside, table[index.clamp(0, LUT_SIZE - 1)], IGNORE_INDEX)
        return out.to(labels.dtype)
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"remap needs integer labels, got an array of {labels.dtype}")
        table_np = lut.detach().cpu().numpy() if isinstance(lut, torch.Tensor) else np.asarray(lut)
        if table_np.shape != (LUT_SIZE,):
            raise ValueError(f"lookup table must have shape (256,), got {table_np.shape}")
        if labels.dtype == np.uint8:
            return table_np[labels].astype(labels.dtype, copy=False)
        inside = (labels >= 0) & (labels < LUT_SIZE)
        out = np.where(inside, table_np[np.clip(labels, 0, LUT_SIZE - 1)], IGNORE_INDEX)
        return out.astype(labels.dtype, copy=False)
    raise TypeError(f"remap needs a numpy array or torch tensor, got {type(labels).__name__}")
