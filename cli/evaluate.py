"""`geoidec evaluate`: a run's saved steps scored again over whole scenes (thin; the work is in
geoidec.runs.evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from geoidec.cli.options import Device, Quiet, TtaOption

from geoidec.config import Split


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `geoidec train`.")],
    step: Annotated[int | None, typer.Option(help="Only this step (default: every step).")] = None,
    split: Annotated[Split, typer.Option(help="Split to evaluate.")] = "test",
    root: Annotated[Path | None, typer.Option(help="Dataset folder, if it moved.")] = None,
    device: Device = "auto",
    on: Annotated[list[str] | None, typer.Option(
        "--on", help="Score on this dataset's test split instead (repeatable): every class "
        "it lists, matched to the model's by name.")] = None,
    tta: TtaOption = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the scores to this JSON file: per step the score keys "
        "of report.json's steps (miou_old, miou_new, miou_all, per_class_iou, ...) and "
        "eval (split, tta, datasets).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --json file.")] = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate a run's saved steps again over whole scenes and print the table.

    Example: `geoidec evaluate runs/demo --step 1`, `geoidec evaluate runs/v2 --on old.yaml`,
    `geoidec evaluate runs/demo --tta d4 --json scores.json`
    """
    from geoidec.api import evaluate as evaluate_run
    from geoidec.files import refuse_existing, write_json
    from geoidec.runs.reports import steps_table

    refuse_existing(json_path, overwrite=overwrite)  # before any step is scored
    report = evaluate_run(run, step=step, split=split, root=root, device=device,
                          on=on or (), tta=tta, progress=not quiet)
    if json_path is not None:
        write_json(json_path, report)
    typer.echo(steps_table(report))
