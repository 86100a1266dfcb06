"""Figures of a run folder, drawn from report.json and the metrics CSVs into ``RUN/figures/``.

================================  ==========================================================
``figures/miou_per_step.png``     old / new / all mIoU (percent) per step
``figures/iou_heatmap.png``       per-class IoU across steps (forgetting at a glance)
``figures/confusion_last_step.png``  row-normalised confusion matrix of the last step
``figures/pseudo_labels.png``     pseudo-labelled pixels (and thresholds) per old class and
                                  step; only for methods that report them (IDEC, PLOP)
================================  ==========================================================

Matplotlib is used through :class:`matplotlib.figure.Figure` and the Agg canvas directly:
no pyplot, no global backend or state change in the calling process. Every file is written
atomically (rendered beside its final name, then renamed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoidec.files import atomic_write
from geoidec.run_folder import RunFolder

MIOU = "miou_per_step.png"
HEATMAP = "iou_heatmap.png"
CONFUSION = "confusion_last_step.png"
PSEUDO = "pseudo_labels.png"
#: What each figure shows (the alt text of its link in the model card).
TITLES = {
    MIOU: "mIoU per step (old, new, all classes)",
    HEATMAP: "IoU per class and step",
    CONFUSION: "Row-normalised confusion matrix of the last step",
    PSEUDO: "Pseudo-labelled pixels per old class and step",
}

_DPI = 100
#: Above this many cells, values are not written into the heatmap / confusion cells.
_MAX_ANNOTATED = 900


# ----------------------------------------------------------------------------- inputs
def has_pseudo_labels(report: dict[str, Any]) -> bool:
    """Whether any step reports ``method_stats.pseudo_labels``."""
    return any((e.get("method_stats") or {}).get("pseudo_labels") for e in report["steps"])


def planned_figures(report: dict[str, Any]) -> list[str]:
    """File names (in ``RUN/figures/``, :meth:`RunFolder.figure`) of the figures
    :func:`write_run_figures` draws for this report, so a model card can link them before or
    after they are drawn."""
    names = [MIOU, HEATMAP, CONFUSION]
    if has_pseudo_labels(report):
        names.append(PSEUDO)
    return names


# ---------------------------------------------------------------------------- drawing
def _new_figure(width: float, height: float) -> Any:
    """A Figure bound to an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    """Render ``fig`` to PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI),
                        suffix=".png")


def _pct(value: Any) -> float:
    return math.nan if value is None else 100.0 * float(value)


def _class_order(report: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in report["steps"]:
        names += [n for n in entry.get("per_class_iou", {}) if n not in names]
    return names


def _step_labels(report: dict[str, Any]) -> list[str]:
    return [f"step {e['step']}" for e in report["steps"]]


def _title(report: dict[str, Any]) -> str:
    label = report.get("label") or report.get("method", "?")
    return f"{label} on {report.get('dataset', '?')}, task {report.get('task', '?')}"


def draw_miou(report: dict[str, Any]) -> Any:
    """Old / new / all mIoU (percent) per step."""
    steps = [int(e["step"]) for e in report["steps"]]
    fig = _new_figure(max(5.0, 1.0 + 0.8 * len(steps)), 4.0)
    ax = fig.add_subplot()
    styles = (("miou_old", "old classes", "o", "tab:blue"),
              ("miou_new", "new classes", "s", "tab:orange"),
              ("miou_all", "all classes", "D", "tab:green"))
    for key, label, marker, color in styles:
        values = [_pct(e.get(key)) for e in report["steps"]]
        if all(math.isnan(v) for v in values):
            continue
        ax.plot(steps, values, marker=marker, color=color, label=label, linewidth=2,
                markersize=7)
    ax.set_xticks(steps)
    ax.set_xlabel("step")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, 100)
    if len(steps) == 1:
        ax.set_xlim(steps[0] - 1, steps[0] + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(f"mIoU per step: {_title(report)}", fontsize=10)
    return fig


def _annotate(ax: Any, values: np.ndarray, fmt: str, fontsize: float,
              dark_high: bool = False) -> None:
    """Write each defined value (percent) into its cell, white on dark cells: below 50 %, or
    above 50 % for a colour map that is dark at high values (``dark_high``)."""
    rows, cols = values.shape
    if rows * cols > _MAX_ANNOTATED:
        return
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if math.isnan(v):
                continue
            dark = v > 50 if dark_high else v < 50
            ax.text(j, i, fmt.format(v), ha="center", va="center",
                    color="white" if dark else "black", fontsize=fontsize)


def _grey_cmap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="#d9d9d9")


def draw_iou_heatmap(report: dict[str, Any]) -> Any:
    """Per-class IoU (percent) across steps; grey where undefined or not yet learnt."""
    names = _class_order(report)
    steps = _step_labels(report)
    values = np.array([[_pct(e.get("per_class_iou", {}).get(n)) for e in report["steps"]]
                       for n in names], dtype=np.float64).reshape(len(names), len(steps))
    width = min(4.0 + 1.1 * len(steps) + 0.06 * max((len(n) for n in names), default=0), 30)
    height = min(1.8 + 0.35 * len(names), 60)
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=_grey_cmap("viridis"), vmin=0,
                      vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(steps)), steps)
    ax.set_yticks(range(len(names)), names, fontsize=9 if len(names) <= 40 else 6)
    ax.set_xlabel("step")
    ax.set_ylabel("class")
    _annotate(ax, values, "{:.1f}", 8)
    fig.colorbar(image, ax=ax, label="IoU (%)")
    ax.set_title(f"IoU per class and step: {_title(report)}", fontsize=10)
    return fig


def draw_confusion(names: Sequence[str], matrix: np.ndarray, step: int,
                   drop_background: bool) -> Any:
    """Row-normalised confusion matrix (rows truth, columns prediction), percent."""
    rows = list(range(len(names)))
    if drop_background and len(rows) > 1:
        rows = rows[1:]
    counts = matrix[rows]
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, 100.0 * counts / np.where(totals > 0, totals, 1), np.nan)
    n = len(names)
    cell = 0.55 if n <= 20 else 0.3 if n <= 60 else 0.2
    fig = _new_figure(min(4.5 + cell * n, 40), min(2.5 + cell * len(rows), 40))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(share), cmap=_grey_cmap("Blues"), vmin=0, vmax=100,
                      aspect="auto", interpolation="nearest")
    small = 9 if n <= 20 else 7 if n <= 60 else 5
    ax.set_xticks(range(n), list(names), rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=small)
    ax.set_yticks(range(len(rows)), [names[r] for r in rows], fontsize=small)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    _annotate(ax, share, "{:.0f}", 7, dark_high=True)  # Blues is dark above ~50 %
    fig.colorbar(image, ax=ax, label="share of the true class's pixels (%)")
    note = f" ({names[0]} not evaluated)" if drop_background and n > 1 else ""
    ax.set_title(f"Confusion matrix, step {step}, row-normalised{note}", fontsize=10)
    return fig


def draw_pseudo_labels(report: dict[str, Any]) -> Any:
    """Pseudo-labelled pixels per old class and step (bars), and the thresholds if any."""
    entries = [e for e in report["steps"]
               if (e.get("method_stats") or {}).get("pseudo_labels")]
    classes: list[str] = []
    for e in entries:
        classes += [c for c in e["method_stats"]["pseudo_labels"] if c not in classes]
    threshold_key = None
    for key in ("thresholds", "entropy_thresholds"):
        if any(e["method_stats"].get(key) for e in entries):
            threshold_key = key
            break
    panels = 2 if threshold_key else 1
    width = min(4.0 + 0.9 * len(classes) * max(1, len(entries)) ** 0.5, 30)
    fig = _new_figure(width, 3.6 * panels + 0.6)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    x = np.arange(len(classes))
    bar = 0.8 / max(1, len(entries))
    for k, e in enumerate(entries):
        stats = e["method_stats"]
        offset = (k - (len(entries) - 1) / 2) * bar
        counts = [float(stats["pseudo_labels"].get(c) or 0) for c in classes]
        axes[0].bar(x + offset, counts, bar, label=f"step {e['step']}")
        if threshold_key:
            thresholds = stats.get(threshold_key) or {}
            values = [math.nan if thresholds.get(c) is None else float(thresholds[c])
                      for c in classes]
            axes[1].bar(x + offset, values, bar, label=f"step {e['step']}")
    axes[0].set_ylabel("pseudo-labelled pixels")
    axes[0].set_title(f"Pseudo-labels of old classes: {_title(report)}", fontsize=10)
    if len(classes) * len(entries) <= 40:
        for container in axes[0].containers:
            axes[0].bar_label(container, fmt="{:,.0f}", fontsize=7)
    # room above the bars for the legend and the counts (and an axis even when all are 0)
    top = max((float(v or 0) for e in entries for v in e["method_stats"]["pseudo_labels"]
               .values()), default=0.0)
    axes[0].set_ylim(0, max(top, 1.0) * 1.25)
    if threshold_key:
        entropy = threshold_key == "entropy_thresholds"
        axes[1].set_ylabel("entropy threshold" if entropy else "confidence threshold")
        if not entropy:
            axes[1].set_ylim(0, 1.2)
    for ax in axes:
        ax.set_xticks(x, classes, rotation=30 if len(classes) > 4 else 0,
                      ha="right" if len(classes) > 4 else "center")
        ax.set_xlabel("old class")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    return fig


# ------------------------------------------------------------------------------ entry
def write_run_figures(run_dir: Path) -> list[Path]:
    """Draw the run's figures into ``RUN/figures/`` and return the paths written.

    Reads ``report.json`` (required), ``task.json`` (``eval_background``: the background row
    of the confusion matrix is dropped when the dataset does not evaluate it) and the last
    step's ``metrics/step_T_confusion.csv`` (the confusion figure is skipped if absent).
    """
    run = RunFolder(run_dir)
    report = run.read_report()
    if not report["steps"]:
        return []
    task = run.read_task_or_empty()
    written = [
        _save(draw_miou(report), run.figure(MIOU)),
        _save(draw_iou_heatmap(report), run.figure(HEATMAP)),
    ]
    last = int(report["steps"][-1]["step"])
    if run.confusion_csv(last).is_file():
        names, matrix = run.read_confusion(last)
        drop = not bool(task.get("eval_background", True))
        written.append(_save(draw_confusion(names, matrix, last, drop),
                             run.figure(CONFUSION)))
    if has_pseudo_labels(report):
        written.append(_save(draw_pseudo_labels(report), run.figure(PSEUDO)))
    return written


__all__ = ["planned_figures", "write_run_figures"]
