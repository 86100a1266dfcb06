"""A checkpoint's metadata (classes, bands, normalisation, task, method, lineage) read without
rebuilding its model: what ``geoidec info`` and the model card show of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoidec.checkpoint import FORMAT, resolve_checkpoint
from geoidec.data.base import DataError


def read_checkpoint_meta(path: str | Path, step: int | None = None) -> dict[str, Any]:
    """A checkpoint's metadata (every key but ``state_dict``) without rebuilding its model.

    ``path`` is a ``step_T.pt`` file or a run folder (its last step, or ``step``); the weights
    are memory-mapped, not read, where the file allows it. Unreadable files raise
    :class:`DataError`.
    """
    import torch

    file = resolve_checkpoint(path, step)
    if not file.is_file():
        raise DataError(f"{file} is not a file (pass a run folder or a step_N.pt file)")
    try:
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip archive: legacy format cannot be memory-mapped
            payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise DataError(f"{file} is not a readable geoidec checkpoint "
                        f"({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{file} is not a geoidec checkpoint (format {FORMAT} expected)")
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["path"] = str(file)
    return meta


__all__ = ["read_checkpoint_meta"]
