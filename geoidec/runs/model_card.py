"""Model cards: what a trained run (or one checkpoint) is, learnt from what, and how it scored.

A card is built once as plain data (:class:`~geoidec.runs.card.Card`) from a run folder
(:func:`run_card`: task.json, config.yaml, report.json, the last checkpoint's classes,
``steps/step_T_scenes.txt``) or from a checkpoint's metadata alone (:func:`checkpoint_card`),
then rendered as Markdown (``RUN/model_card.md``, written by :func:`write_model_card`) or as
rich tables by ``geoidec info``, so both say the same. The sections both kinds of card share
are built in :mod:`geoidec.runs.card_sections`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoidec.data.base import DataError
from geoidec.files import write_text
from geoidec.run_folder import RunFolder
from geoidec.runs.card import Block, Card, Fields, Image, Section, Text
from geoidec.runs.card_markdown import card_markdown, table_from_markdown
from geoidec.runs.card_sections import (
    classes_section,
    data_section,
    format_value,
    input_section,
    lineage_section,
    method_section,
    predict_section,
)
from geoidec.runs.checkpoint_meta import read_checkpoint_meta
from geoidec.runs.figures import TITLES, planned_figures
from geoidec.runs.reports import classes_table, steps_table


def _metrics_section(report: dict[str, Any]) -> Section:
    """The report's mIoU per step and IoU per class and step."""
    metrics: list[Block] = [
        Text("mIoU in percent, whole stitched scenes of the evaluation split: old = step-0 "
             "classes, new = classes learnt after step 0."),
        table_from_markdown(steps_table(report)),
        Text("IoU per class and step (percent; '-' where undefined or not yet learnt):"),
        table_from_markdown(classes_table(report)),
    ] if report["steps"] else [Text("No step evaluated yet.")]
    return Section("Metrics per step", metrics)


def _figures_section(run: RunFolder, report: dict[str, Any]) -> Section:
    """Links to the figures of the report (drawn or still to be drawn)."""
    return Section("Figures", [Image(TITLES.get(name, Path(name).stem),
                                     run.relative(run.figure(name)))
                               for name in planned_figures(report)])


def run_card(run_dir: Path) -> Card:
    """The card of a run folder (task.json, config.yaml, report.json, last checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder not found: {run_dir}")
    run = RunFolder(run_dir)
    report = run.read_report()
    meta = run.read_task_or_empty()
    if not meta:
        raise DataError(f"no readable task.json in {run_dir}; is it a geoidec run folder?")
    config = run.read_config_or_empty()
    try:
        ckpt = read_checkpoint_meta(run_dir)
    except DataError:
        ckpt = {}
    method = str(report.get("method") or meta.get("method") or "?")
    task = meta.get("task") or {}
    title = (f"Model card: {report.get('label') or method} on {report.get('dataset', '?')}, "
             f"task {report.get('task', task.get('spec', '?'))}")
    summary = Fields([
        ("run folder", str(run_dir)),
        ("steps trained", ", ".join(str(e["step"]) for e in report["steps"]) or "none yet"),
        ("last checkpoint", run.relative(ckpt["path"]) if ckpt else "none yet"),
        ("seed", format_value(report.get("seed"))),
        ("geoidec", str(report.get("geoidec_version", "-"))),
    ])
    sections = [
        Section("Summary", [summary]),
        classes_section(ckpt.get("classes") or [], task, method, meta.get("eval_background")),
        input_section(meta),
        method_section(method, report.get("label"), config, ckpt.get("model")),
        data_section(meta, config, report, run.read_scene_lists()),
        *[x for x in [lineage_section(meta)] if x is not None],
        _metrics_section(report),
        _figures_section(run, report),
        predict_section(str(run_dir), meta, config),
    ]
    return Card(title, sections, base=run_dir)


def checkpoint_card(path: Path) -> Card:
    """The card of one checkpoint file, from its metadata only (no metrics, no figures)."""
    meta = read_checkpoint_meta(path)
    method = str(meta.get("method", "?"))
    task = meta.get("task") or {}
    dataset = meta.get("dataset") or {}
    name = dataset.get("name", "?") if isinstance(dataset, dict) else dataset
    config = meta.get("config") or {}
    title = f"Checkpoint: {method} on {name}, task {task.get('spec', '?')}, step {meta.get('step')}"
    summary = Fields([
        ("checkpoint", meta["path"]),
        ("step", format_value(meta.get("step"))),
        ("classes learnt at this step", ", ".join(meta.get("step_classes") or []) or "-"),
        ("format", str(meta.get("format"))),
        ("geoidec", str(meta.get("geoidec_version", "-"))),
    ])
    sections = [
        Section("Summary", [summary]),
        classes_section(meta.get("classes") or [], task, method, meta.get("eval_background")),
        input_section(meta),
        method_section(method, None, config, meta.get("model")),
        data_section(meta, config, None, {}),
        *[x for x in [lineage_section(meta)] if x is not None],
        predict_section(meta["path"], meta, config),
    ]
    return Card(title, sections)


def describe(path: Path) -> Card:
    """A run folder's card, or a checkpoint file's; a one-line error for anything else."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"not found: {path} (pass a run folder or a step_N.pt checkpoint)")
    if path.is_dir():
        run = RunFolder(path)
        if run.report.is_file():
            return run_card(path)
        if run.has_checkpoints():
            return checkpoint_card(path)
        raise DataError(f"{path} is not a geoidec run folder (no report.json, no checkpoints/)")
    return checkpoint_card(path)


def model_card(run_dir: Path) -> str:
    """The Markdown model card of a run folder."""
    return card_markdown(run_card(Path(run_dir)))


def write_model_card(run_dir: Path) -> Path:
    """Write ``RUN/model_card.md`` atomically and return its path."""
    return write_text(RunFolder(run_dir).model_card, model_card(run_dir))


__all__ = ["run_card", "checkpoint_card", "describe", "model_card", "write_model_card"]
