"""The state of a step in progress beyond the weights: random generators and the method's
running statistics (IDEC's thresholds, PLOP's medians, pseudo-label counts).

Both travel as plain values and tensors only, so they load with ``weights_only=True``: in a
partial checkpoint (``--resume`` continues exactly where the step stopped) and from a DDP
worker back to the main process (:class:`StepOutcome`).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from geoidec.methods import Method
from geoidec.training.distributed import encode

_PLAIN = (bool, int, float, str, type(None))
#: Method attributes that are set up by the engine, not learnt during the step.
_SKIP = {"config", "step_plan"}


def _plain(value: Any) -> bool:
    if isinstance(value, (*_PLAIN, torch.Tensor)):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def method_snapshot(method: Method) -> dict[str, Any]:
    """The method's per-step attributes: plain values and tensors as they are, objects with a
    ``state_dict`` through it; anything else is rebuilt by ``start_step``."""
    attrs: dict[str, Any] = {}
    states: dict[str, Any] = {}
    for name, value in vars(method).items():
        if name in _SKIP:
            continue
        if _plain(value):
            attrs[name] = value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value
        elif callable(getattr(value, "state_dict", None)) and callable(
                getattr(value, "load_state_dict", None)):
            states[name] = value.state_dict()
    return {"attrs": attrs, "states": states}


def restore_method(method: Method, snapshot: dict[str, Any]) -> None:
    """Put a :func:`method_snapshot` back (after ``start_step`` created the attributes)."""
    for name, value in snapshot.get("attrs", {}).items():
        current = getattr(method, name, None)
        if isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor):
            value = value.to(current.device)
        setattr(method, name, value)
    for name, state in snapshot.get("states", {}).items():
        target = getattr(method, name, None)
        if target is not None:
            target.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), NumPy and Python generator states as plain values and tensors."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [version, list(internal), gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class StepOutcome(Callback):
    """Records, at the end of a step's training, what the main process needs and a DDP worker
    would otherwise take with it: the optimiser steps done and the method's statistics."""

    KEY = "geoidec_step_outcome"

    def __init__(self, method: Method) -> None:
        self.method = method

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics[self.KEY] = encode(
            {"global_step": int(trainer.global_step), "method": method_snapshot(self.method)}
        )


__all__ = ["StepOutcome", "method_snapshot", "restore_method", "restore_rng", "rng_state"]
