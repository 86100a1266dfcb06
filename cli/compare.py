"""`geoidec compare`: runs side by side (thin; the table is built by geoidec.runs.compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (methods, seeds, ablations).")],
    out: Annotated[Path | None, typer.Option(help="Also write the table to this file.")] = None,
) -> None:
    """Side-by-side table of runs' final step: old/new/all mIoU and IoU per class; runs of the
    same method on the same task are pooled as mean ± std over seeds.

    Example: `geoidec compare runs/finetune runs/joint runs/mib runs/plop runs/idec`
    """
    from geoidec.files import write_text
    from geoidec.runs.compare import compare_runs

    table = compare_runs(runs)
    if out is not None:
        write_text(out, table)
    typer.echo(table)
