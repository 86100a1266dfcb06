"""Several training processes: how this one was launched, who writes files, and the few
collectives the engine needs.

Three launches (:func:`detect_launch`):

- ``single``: one process, one device (the default);
- ``spawn``: ``train.devices`` > 1 without a launcher. geoidec runs normally in one process
  and only each step's ``Trainer.fit`` forks (CPU, gloo) or spawns (CUDA, NCCL) the DDP
  workers; normalisation, chip planning, evaluation and every file happen once, in the main
  process, which gets the trained weights back from rank 0;
- ``external``: ``torchrun`` or SLURM ``srun`` started one process per device. Every process
  runs the whole command (the same deterministic normalisation and chip plan); rank 0 alone
  writes files, evaluation is sharded over the ranks and the confusion matrices are summed.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from geoidec.config import ConfigError, TrainConfig
from geoidec.data.base import DataError

STRATEGIES = ("auto", "ddp")


@dataclass(frozen=True)
class Launch:
    """How this process takes part in training."""

    kind: str  # "single" | "spawn" | "external"
    accelerator: str  # "cpu" | "gpu"
    devices: int = 1
    num_nodes: int = 1
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (global rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def lightning_strategy(self) -> str:
        """Lightning's strategy name for this launch. Parameters may go unused in a step
        (the projection head outside IDEC, frozen backbones), which DDP must be told."""
        if self.kind == "external":
            return "ddp_find_unused_parameters_true"
        if self.kind == "spawn":
            # fork is cheap and needs no pickling, but CUDA cannot be used after a fork
            if self.accelerator == "gpu":
                return "ddp_spawn_find_unused_parameters_true"
            return "ddp_fork_find_unused_parameters_true"
        return "auto"

    @property
    def sync_batchnorm(self) -> bool:
        """SyncBatchNorm on several GPUs (PyTorch has no CPU implementation)."""
        return self.distributed and self.accelerator == "gpu"


def check_train_settings(cfg: TrainConfig) -> None:
    """One-line errors for the multi-process and resume settings."""
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"train.strategy must be one of {', '.join(STRATEGIES)}, not "
                          f"'{cfg.strategy}'")
    for key in ("devices", "num_nodes", "accumulate"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.checkpoint_every < 0:
        raise ConfigError(f"train.checkpoint_every must be 0 (never) or more, got "
                          f"{cfg.checkpoint_every}")


def _cluster_environment() -> Any | None:
    """Lightning's environment of an external launcher with several processes, if any."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for env_cls in (TorchElasticEnvironment, SLURMEnvironment):
        try:
            found = env_cls.detect()
        except Exception:  # noqa: BLE001 - a half-configured SLURM shell is not a launch
            found = False
        if found:
            env = env_cls()
            if env.world_size() > 1:
                return env
    return None


def detect_launch(cfg: TrainConfig, device: torch.device) -> Launch:
    """The launch this process is part of; clear errors for impossible combinations."""
    check_train_settings(cfg)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    wanted = cfg.devices * cfg.num_nodes
    env = _cluster_environment()
    if env is not None:
        started = env.world_size()
        if started != wanted:
            raise DataError(
                f"the launcher started {started} processes but train.devices x train.num_nodes "
                f"= {cfg.devices} x {cfg.num_nodes} = {wanted}; pass --set train.devices=N "
                "(processes per node) and --set train.num_nodes=M to match"
            )
        return Launch("external", accelerator, cfg.devices, cfg.num_nodes, env.global_rank(),
                      env.local_rank(), started)
    if cfg.num_nodes > 1:
        raise DataError("train.num_nodes > 1 needs one process per device on every node, "
                        "started by srun or torchrun (see README, 'Several GPUs and nodes')")
    if wanted == 1:
        return Launch("single", accelerator)
    if accelerator == "gpu" and torch.cuda.device_count() < cfg.devices:
        raise DataError(f"train.devices={cfg.devices} but only {torch.cuda.device_count()} "
                        "GPU(s) are visible")
    return Launch("spawn", accelerator, cfg.devices, 1, world_size=cfg.devices)


def init_process_group(launch: Launch) -> None:
    """Join the launcher's process group early (external launches), so that the run folder can
    be prepared by rank 0 behind a barrier; Lightning then reuses the group."""
    if launch.kind != "external" or dist.is_initialized():
        return
    env = _cluster_environment()
    assert env is not None
    os.environ["MASTER_ADDR"] = env.main_address
    os.environ["MASTER_PORT"] = str(env.main_port)
    if launch.accelerator == "gpu":
        torch.cuda.set_device(launch.local_rank)
    backend = "nccl" if launch.accelerator == "gpu" else "gloo"
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size)


def main_only(func: Callable[[str], None], launch: Launch) -> Callable[[str], None]:
    """``func`` on rank 0, a no-op elsewhere (messages are printed once)."""
    if launch.is_main:
        return func
    return lambda _message: None


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (names, dtypes, shapes and values, prefix ``module.`` ignored):
    equal digests mean identical weights and buffers."""
    sha = hashlib.sha256()
    for name in sorted(state, key=lambda k: k.removeprefix("module.")):
        tensor = state[name].detach().cpu().contiguous()
        sha.update(name.removeprefix("module.").encode())
        sha.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def encode(value: Any) -> torch.Tensor:
    """Plain values and tensors as one uint8 tensor (travels in Lightning's callback metrics
    from a DDP worker back to the main process)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def decode(tensor: torch.Tensor) -> Any:
    """Inverse of :func:`encode` (``weights_only``: plain values and tensors only)."""
    return torch.load(io.BytesIO(tensor.numpy().tobytes()), weights_only=True)


class SyncRanks(Callback):
    """At the end of a step's training on several processes: copy rank 0's buffers (BatchNorm
    running statistics, which each rank updates on its own data without SyncBatchNorm) to every
    rank, and gather a digest of every rank's weights into ``callback_metrics`` so that the run
    can check (and record) that all ranks hold the same model."""

    KEY = "geoidec_rank_digests"

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        model: torch.nn.Module = pl_module.model  # type: ignore[assignment]
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)
        digests = [""] * dist.get_world_size()
        dist.all_gather_object(digests, state_digest(model.state_dict()))
        trainer.callback_metrics[self.KEY] = encode(digests)


__all__ = [
    "Launch",
    "SyncRanks",
    "check_train_settings",
    "decode",
    "detect_launch",
    "encode",
    "init_process_group",
    "main_only",
    "state_digest",
]
