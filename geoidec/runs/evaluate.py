"""``geoidec evaluate RUN``: evaluate saved steps of a run again, from its checkpoints."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.config import Config, MethodConfig
from geoidec.data.base import DataError, DatasetSpec
from geoidec.data.normalization import with_fill
from geoidec.data.registry import load_dataset
from geoidec.devices import resolve_device
from geoidec.evaluation.by_name import evaluate_by_name, summary_by_name
from geoidec.evaluation.evaluate import Scorer, step_scorer, step_summary
from geoidec.methods import build_method
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule


def evaluate_report(run: Path, *, step: int | None = None, split: str = "test",
                    root: Path | None = None, device: str = "auto",
                    on: Sequence[str] = (), tta: str | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Re-evaluate each saved step (or one): ``{"run", "steps": [...]}``, each step with the
    score keys of ``report.json``'s steps (``miou_old``, ``miou_new``, ``miou_all``,
    ``per_class_iou``, ...) and ``eval``: ``{"split", "tta", "datasets"}`` (the datasets
    scored: the run's own, or those of ``on``).

    ``tta``: test-time augmentation (``eval.tta``) instead of the one the run was trained
    with; checked before any checkpoint is read.

    ``on``: datasets (names or YAMLs) to score instead of the run's own, every class each
    lists matched to the model's by name (pooled into one table row per step); a ``--from``
    run is always scored that way (its dataset lists only some classes).
    """
    eval_updates = {} if tta is None else {"eval.tta": tta}
    Config().override(eval_updates)  # a typo stops here, in one line
    task = RunFolder(run).read_task()
    ds_meta = task["dataset"]
    source = ds_meta.get("yaml") or ds_meta["name"]
    if on or task.get("parent"):
        datasets = [load_dataset(d, root) for d in on] or [
            load_dataset(source, root or ds_meta.get("root"), ds_meta.get("modality", "rgb"))]
        return _evaluate_by_name(Path(run), step, split if not on else "test", datasets,
                                 resolve_device(device), eval_updates, progress)
    dataset = load_dataset(source, root or ds_meta.get("root"), ds_meta.get("modality", "rgb"))
    schedule = TaskSchedule.from_dict(task["task"])
    method = build_method(MethodConfig(name=task["method"]))
    plans = {p.step: p for p in method.plan(schedule)}
    steps = [step] if step is not None else sorted(plans)
    dev = resolve_device(device)
    report: dict[str, Any] = {"run": str(run), "steps": []}
    for t in steps:
        if t not in plans:
            raise DataError(f"step {t} is not part of this run (steps {sorted(plans)})")
        ckpt = load_checkpoint(run, t, map_location=dev)
        plan = plans[t]
        scenes = with_fill(dataset.scenes(split), ckpt.normalization)  # read as in training
        config = _config(ckpt, eval_updates)
        score = _scorer(ckpt, dev, config, progress)
        matrix = score(scenes, dataset.decoder, schedule.eval_lut(t))
        names = [c.name for c in ckpt.classes]
        _, summary = step_summary(matrix, names, plan, dataset.eval_background)
        report["steps"].append({"step": t, "step_classes": [names[c] for c in
                                                            plan.step_classes], **summary,
                                "eval": _eval_info(split, config, [dataset])})
    return report


def _evaluate_by_name(run: Path, step: int | None, split: str, datasets: Sequence[DatasetSpec],
                      device: Any, updates: dict[str, Any], progress: bool = True
                      ) -> dict[str, Any]:
    """Every saved step (or ``step``) scored on ``datasets`` by class name."""
    found = RunFolder(run).saved_steps()
    steps = [step] if step is not None else found
    report: dict[str, Any] = {"run": str(run), "steps": []}
    for t in steps:
        if t not in found:
            raise DataError(f"step {t} is not part of this run (steps {found})")
        ckpt = load_checkpoint(run, t, map_location=device)
        names = [c.name for c in ckpt.classes]
        schedule = TaskSchedule.from_dict(ckpt.meta["task"])
        config = _config(ckpt, updates)
        matrix, scored, _ = evaluate_by_name(
            _scorer(ckpt, device, config, progress), names, [(d, split) for d in datasets],
            ckpt.normalization,
            lambda m: print(f"geoidec: {m}", file=sys.stderr))
        if matrix is None:
            raise DataError("no dataset lists a class the model knows; nothing to score")
        summary = summary_by_name(matrix, names, scored, schedule.new_classes(0))
        report["steps"].append({"step": t, "step_classes": list(ckpt.meta["step_classes"]),
                                **summary, "eval": _eval_info(split, config, datasets)})
    return report


def _config(ckpt: Checkpoint, updates: dict[str, Any]) -> Config:
    """The step's training configuration with the ``eval.*`` ``updates``."""
    return Config.from_dict(ckpt.meta["config"]).override(updates)


def _eval_info(split: str, config: Config, datasets: Sequence[DatasetSpec]) -> dict[str, Any]:
    return {"split": split, "tta": config.eval.tta, "datasets": [d.name for d in datasets]}


def _scorer(ckpt: Checkpoint, device: torch.device, config: Config,
            progress: bool) -> Scorer:
    """A saved step scored as training scored it (the checkpoint's tile, overlap, batch size,
    mixed precision and test-time augmentation), but for the ``eval.*`` updates in
    ``config``."""
    return step_scorer(ckpt.model, ckpt.normalization, step=int(ckpt.meta.get("step", 0)),
                       tile=ckpt.tile_size, overlap=int(ckpt.meta["overlap"]),
                       config=config, device=device, progress=progress)
