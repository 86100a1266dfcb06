"""One step's Lightning ``Trainer`` and what comes back from its ``fit``."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from geoidec.config import Config
from geoidec.data.base import DataError
from geoidec.training.distributed import Launch, SyncRanks, decode
from geoidec.training.step_state import StepOutcome

#: ``callback_metrics`` key of :class:`geoidec.training.resume.PartialCheckpoint`.
RESUMED_KEY = "geoidec_resumed_at"


def quiet_lightning() -> None:
    """Keep Lightning's banners and tips out of the user's terminal (warnings stay)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*sync_dist.*", ".*LeafSpec.*",
                    ".*litlogger.*",
                    # a resumed step's ChipSampler skips the trained batches itself
                    ".*resuming from a checkpoint that ended before the epoch ended.*",
                    ".*Experiment logs directory .* exists and is not empty.*",
                    ".*can run with static graph optimizations.*"):
        warnings.filterwarnings("ignore", pattern)


class _Quiet(Callback):
    """:func:`quiet_lightning` in spawned DDP workers too (they start from a fresh import)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        quiet_lightning()


def precision(cfg: Config, device: torch.device) -> str:
    """Lightning's precision: native AMP (``16-mixed``) on CUDA under ``auto``, fp32 on CPU."""
    if cfg.train.precision == "auto":
        return "16-mixed" if device.type == "cuda" else "32-true"
    return {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(
        cfg.train.precision, cfg.train.precision
    )


def build_trainer(cfg: Config, launch: Launch, device: torch.device, run_dir: Path, step: int,
                  iterations: int, callbacks: list[Callback]) -> L.Trainer:
    """A Trainer for ``iterations`` optimiser steps of one step on this launch's devices."""
    from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    train = cfg.train
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    devices: Any = launch.devices
    if launch.kind == "single":
        devices = [device.index or 0] if accelerator == "gpu" else 1
    progress = [RichProgressBar(leave=True)] if train.progress else []
    loggers: list[Any] = [CSVLogger(run_dir / "logs", name=f"step_{step}", version="")]
    if train.logger == "tensorboard":
        loggers.append(TensorBoardLogger(run_dir / "logs", name=f"step_{step}", version="",
                                         default_hp_metric=False))
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=launch.num_nodes,
        strategy=launch.lightning_strategy,
        sync_batchnorm=launch.sync_batchnorm,
        # the ChipSampler shards the chip plan itself (and skips what a resumed step did)
        use_distributed_sampler=False,
        accumulate_grad_batches=train.accumulate,
        precision=precision(cfg, device),  # type: ignore[arg-type]
        max_steps=iterations,
        gradient_clip_val=train.grad_clip,
        max_epochs=1,  # the chip plan holds exactly the batches of `iterations` steps
        logger=loggers,
        log_every_n_steps=max(1, min(10, iterations // 5)),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=train.progress,
        num_sanity_val_steps=0,
        callbacks=[_Quiet(), *callbacks, SyncRanks(), LearningRateMonitor("step"),
                   *progress],
        default_root_dir=str(run_dir),
    )


@dataclass
class FitResult:
    """What one step's training left: optimiser steps done, the method's statistics (from the
    rank-0 worker when the fit ran in worker processes) and each rank's weight digest."""

    global_step: int
    method_state: dict[str, Any] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)
    #: The iteration a resumed step continued from (None: trained from its beginning).
    resumed_at: int | None = None


def fit_step(trainer: L.Trainer, module: L.LightningModule, loader: DataLoader,
             step: int, iterations: int, ckpt_path: Path | None = None) -> FitResult:
    """``trainer.fit`` (from ``ckpt_path``, loaded with ``weights_only=True``, when given);
    an error when the step stopped before its last iteration."""
    trainer.fit(module, loader, ckpt_path=str(ckpt_path) if ckpt_path else None,
                weights_only=True)
    metrics = trainer.callback_metrics
    outcome = decode(metrics[StepOutcome.KEY]) if StepOutcome.KEY in metrics else {}
    result = FitResult(
        global_step=int(outcome.get("global_step", trainer.global_step)),
        method_state=outcome.get("method", {}),
        digests=decode(metrics[SyncRanks.KEY]) if SyncRanks.KEY in metrics else [],
        resumed_at=int(metrics[RESUMED_KEY]) if RESUMED_KEY in metrics else None,
    )
    if result.global_step < iterations:
        raise DataError(f"training of step {step} stopped after {result.global_step} of "
                        f"{iterations} iterations; continue it with --resume")
    return result


__all__ = ["FitResult", "build_trainer", "fit_step", "precision", "quiet_lightning"]
