"""Before ``geoidec predict`` predicts: its inputs and outputs checked, this process's place
among a launcher's processes, and the checkpoints it predicts with.

- :func:`prediction_targets`: one scene into a class map (default ``SCENE_classes.tif``
  beside it; existing outputs refused without ``overwrite``) or several (files, a folder, a
  glob) into an output folder;
- :func:`join_launch`: the device, and under ``torchrun``/``srun`` the process group that
  shares each scene by rows (rank 0 alone shows progress, warns and reports);
- :func:`latest_run` (the model when none is named) and :func:`load_models`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.data.base import DataError
from geoidec.devices import resolve_device
from geoidec.errors import UsageError
from geoidec.files import refuse_existing
from geoidec.inference.batch import find_scenes, is_batch, scene_output
from geoidec.inference.distributed import PredictGroup
from geoidec.inference.stac import stac_path
from geoidec.run_folder import RunFolder

__all__ = ["PredictProcess", "PredictTargets", "join_launch", "latest_run", "load_models",
           "prediction_targets"]


@dataclass(frozen=True)
class PredictTargets:
    """What to predict into what: one scene into the class map ``out``, or (``batch``) the
    scenes found into the folder ``out``."""

    scenes: list[Path]
    out: Path
    batch: bool


def prediction_targets(inputs: Sequence[Path], out: Path | None, *, stac: bool = False,
                       overwrite: bool = False) -> PredictTargets:
    """The scenes and output of ``inputs`` (files, folders, quoted globs): an input that is
    missing, several inputs without an output folder, or (one scene) an existing class map
    or STAC Item without ``overwrite`` is an error before anything is loaded."""
    batch = is_batch([str(s) for s in inputs])
    if not batch and not inputs[0].exists():
        raise DataError(f"input not found: {inputs[0]}")
    if batch:
        if out is None:
            raise UsageError("several inputs need --out DIR (the output folder)")
        if out.is_file():
            raise UsageError(f"--out {out} is a file; several inputs need an output folder")
        return PredictTargets(find_scenes(inputs, out), out, batch=True)
    out = out if out is not None else scene_output(inputs[0], inputs[0].parent)
    refuse_existing(out, stac_path(out) if stac else None, overwrite=overwrite)
    return PredictTargets([inputs[0]], out, batch=False)


@dataclass(frozen=True)
class PredictProcess:
    """This process's part in a prediction: its device, its launcher's group (``None`` for a
    single process) and whether it stays quiet (no progress bar)."""

    device: torch.device
    group: PredictGroup | None
    quiet: bool

    @property
    def is_main(self) -> bool:
        """The process that reports (rank 0, or the only one)."""
        return self.group is None or self.group.is_main


def join_launch(device: str, quiet: bool = False) -> PredictProcess:
    """Resolve ``device`` and, started by ``torchrun``/``srun``, join the ranks that share
    each scene by rows: each rank takes its local GPU, and the ranks other than 0 show no
    progress and log errors only."""
    group = PredictGroup.from_env()
    dev = resolve_device(device)
    if group is not None:
        dev = group.device(dev)
        quiet = quiet or not group.is_main
        if not group.is_main:  # rank 0 alone warns and reports
            logging.getLogger("geoidec").setLevel(logging.ERROR)
    return PredictProcess(dev, group, quiet)


def latest_run(runs: Path) -> Path:
    """The most recently finished run folder under ``runs`` (a report and a checkpoint)."""
    folders = [RunFolder(p) for p in runs.iterdir()] if runs.is_dir() else []
    done = [run for run in folders if run.is_finished_run()]
    if not done:
        raise UsageError(f"no --model given and no finished run under {runs}/; pass --model "
                        "RUN_FOLDER (or a step_N.pt checkpoint)")
    return max(done, key=lambda run: run.report.stat().st_mtime).path


def load_models(model: Path, change_from: Path | None, device: torch.device, *,
                compile_model: bool = False) -> tuple[Checkpoint, Checkpoint | None]:
    """The checkpoint to predict with and the older one of ``change_from`` (``None`` without
    it), on ``device``; compiled with ``torch.compile`` when asked."""
    ckpt = load_checkpoint(model, map_location=device)
    old = load_checkpoint(change_from, map_location=device) if change_from is not None else None
    if compile_model:
        ckpt.model.compile()
        if old is not None:
            old.model.compile()
    return ckpt, old
