"""``geoidec evaluate RUN``: evaluate saved steps of a run again, from its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from geoidec.config import Config, MethodConfig
from geoidec.data.base import DataError
from geoidec.data.normalization import with_fill
from geoidec.data.registry import load_dataset
from geoidec.engine.checkpoint import load_checkpoint, resolve_checkpoint
from geoidec.engine.evaluate import evaluate_scenes
from geoidec.engine.metrics import summarize
from geoidec.engine.reports import steps_table
from geoidec.engine.run import resolve_device
from geoidec.methods import build_method
from geoidec.tasks import TaskSchedule


def evaluate_run(run: Path, *, step: int | None = None, split: str = "test",
                 root: Path | None = None, device: str = "auto") -> str:
    """Re-evaluate each saved step (or one) and return the Markdown table."""
    task_file = Path(run) / "task.json"
    if not task_file.exists():
        raise DataError(f"{run} is not a geoidec run folder (no task.json)")
    task = json.loads(task_file.read_text())
    ds_meta = task["dataset"]
    source = ds_meta.get("yaml") or ds_meta["name"]
    dataset = load_dataset(source, root or ds_meta.get("root"), ds_meta.get("modality", "rgb"))
    schedule = TaskSchedule.from_dict(task["task"])
    method = build_method(MethodConfig(name=task["method"]))
    plans = {p.step: p for p in method.plan(schedule)}
    steps = [step] if step is not None else sorted(plans)
    dev = resolve_device(device)
    report = {"steps": []}
    for t in steps:
        if t not in plans:
            raise DataError(f"step {t} is not part of this run (steps {sorted(plans)})")
        resolve_checkpoint(run, t)
        ckpt = load_checkpoint(run, t, map_location=dev)
        cfg = Config.from_dict(ckpt.meta["config"])
        plan = plans[t]
        scenes = with_fill(dataset.scenes(split), ckpt.normalization)  # read as in training
        cm = evaluate_scenes(
            ckpt.model, scenes, dataset.decoder, ckpt.normalization, schedule.eval_lut(t),
            tile=ckpt.tile_size, overlap=int(ckpt.meta["overlap"]),
            batch_size=cfg.eval.batch_size, device=dev,
        )
        names = [c.name for c in ckpt.classes]
        old = (0, *plan.old_classes) if dataset.eval_background else plan.old_classes
        summary = summarize(cm.matrix, class_names=names, old=old, new=plan.new_classes,
                            include_background=dataset.eval_background)
        report["steps"].append({"step": t, "step_classes": [names[c] for c in
                                                            plan.step_classes], **summary})
    return steps_table(report)
