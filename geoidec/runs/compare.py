"""Side-by-side tables of several runs (methods, seeds, ablations) from their report.json."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from geoidec.errors import DataError
from geoidec.run_folder import RunFolder


def _label(report: dict[str, Any], run: Path) -> str:
    ablation = report.get("label")
    return ablation or report["method"]


def _cell(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{100 * vals[0]:.1f}"
    return f"{100 * statistics.mean(vals):.1f} ± {100 * statistics.stdev(vals):.1f}"


def compare_runs(runs: list[Path]) -> str:
    """Markdown table: one row per method (seeds pooled as mean ± std), final step's
    old/new/all mIoU and per-class IoU."""
    if not runs:
        raise DataError("give at least one run folder")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        report = RunFolder(run).read_report()
        key = (report["dataset"], report["task"], _label(report, run))
        groups[key].append(report["steps"][-1])
    classes: list[str] = []
    for finals in groups.values():
        for final in finals:
            classes += [c for c in final["per_class_iou"] if c not in classes]
    head = ("| dataset | task | method | runs | mIoU old | mIoU new | mIoU all | "
            + " | ".join(classes) + " |")
    lines = [head, "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(classes)]
    for (dataset, task, label), finals in groups.items():
        cells = [_cell([f[k] for f in finals]) for k in ("miou_old", "miou_new", "miou_all")]
        per_class = [_cell([f["per_class_iou"].get(c) for f in finals]) for c in classes]
        lines.append(f"| {dataset} | {task} | {label} | {len(finals)} | " + " | ".join(cells)
                     + " | " + " | ".join(per_class) + " |")
    return "\n".join(lines) + "\n"
