"""Readable run reports: per-step CSVs and a Markdown summary of report.json."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from geoidec.config.choices import TTA_WORDS


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def step_csv(entry: dict[str, Any]) -> str:
    """Per-class IoU, F1 and forgetting of one step (fractions)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "iou", "f1", "forgetting", "group"])
    old, new = set(entry["old_classes"]), set(entry["new_classes"])
    for name, iou in entry["per_class_iou"].items():
        group = "old" if name in old else "new" if name in new else ""
        writer.writerow([name, "" if iou is None else f"{iou:.6f}",
                         _csv_num(entry["per_class_f1"].get(name)),
                         _csv_num(entry.get("forgetting", {}).get(name)), group])
    for key in ("miou_old", "miou_new", "miou_all", "mean_f1", "pixel_accuracy"):
        writer.writerow([key, _csv_num(entry.get(key)), "", "", "summary"])
    return buf.getvalue()


def _csv_num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def confusion_csv(matrix: np.ndarray, names: Sequence[str]) -> str:
    """Confusion matrix with class names; rows ground truth, columns prediction."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["truth \\ predicted", *names])
    for name, row in zip(names, matrix.tolist(), strict=True):
        writer.writerow([name, *row])
    return buf.getvalue()


def pseudo_label_csv(stats: dict[str, Any]) -> str:
    """Pseudo-labelled pixels and final threshold per old class of one step."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "pseudo_labelled_pixels", "threshold"])
    thresholds = stats.get("thresholds") or stats.get("entropy_thresholds") or {}
    for name, count in stats["pseudo_labels"].items():
        writer.writerow([name, count, thresholds.get(name, "")])
    became = "kept as background" if stats.get("uncertain_label") == "background" else "ignored"
    writer.writerow([f"uncertain ({became})", stats.get("uncertain_pixels", ""), ""])
    return buf.getvalue()


def steps_table(report: dict[str, Any]) -> str:
    """Markdown table of old/new/all mIoU per step (percent)."""
    lines = ["| step | classes learnt | mIoU old | mIoU new | mIoU all | mean F1 |",
             "|---:|---|---:|---:|---:|---:|"]
    for e in report["steps"]:
        lines.append(
            f"| {e['step']} | {', '.join(e['step_classes'])} | {_fmt(e['miou_old'])} | "
            f"{_fmt(e['miou_new'])} | {_fmt(e['miou_all'])} | {_fmt(e.get('mean_f1'))} |"
        )
    return "\n".join(lines)


def classes_table(report: dict[str, Any]) -> str:
    """Markdown table of per-class IoU across steps (percent; '-' before a class exists)."""
    names: list[str] = []
    for e in report["steps"]:
        names += [n for n in e["per_class_iou"] if n not in names]
    head = "| class | " + " | ".join(f"step {e['step']}" for e in report["steps"]) + " |"
    lines = [head, "|---|" + "---:|" * len(report["steps"])]
    for name in names:
        cells = [_fmt(e["per_class_iou"].get(name)) for e in report["steps"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tta_note(tta: str | None) -> str:
    """``"; <what the test-time augmentation computes> (`eval.tta: T`)"``, or ``""`` for
    none: what scores made with ``tta`` say of it."""
    if tta is None or tta == "none":
        return ""
    return f"; {TTA_WORDS.get(tta, tta)} (`eval.tta: {tta}`)"


def _tta_words(report: dict[str, Any]) -> str:
    """:func:`tta_note` of every test-time augmentation the steps used."""
    ttas = {(e.get("eval") or {}).get("tta") or "none" for e in report["steps"]}
    return "".join(tta_note(t) for t in sorted(ttas))


def report_markdown(report: dict[str, Any]) -> str:
    """The run's report.md."""
    parts = [
        f"# {report['method']} on {report['dataset']}, task {report['task']}",
        "",
        f"Seed {report['seed']}; evaluated on the `{report['eval_split']}` split over whole "
        f"stitched scenes (one confusion matrix per step{_tta_words(report)}). mIoU in "
        "percent: old = step-0 classes, new = classes learnt after step 0.",
        "",
        steps_table(report),
        "",
        "## IoU per class and step",
        "",
        classes_table(report),
        "",
    ]
    return "\n".join(parts)


def log_evaluation(folder: Any, entry: dict[str, Any]) -> None:
    """Append step ``entry``'s scores to TensorBoard event files in ``folder``, at the step
    number: ``eval/miou_old``, ``eval/miou_new``, ``eval/miou_all``, ``eval/pixel_accuracy``
    and ``iou/CLASS`` per class (undefined values are left out)."""
    from torch.utils.tensorboard import SummaryWriter

    step = int(entry["step"])
    with SummaryWriter(str(folder)) as writer:
        for key in ("miou_old", "miou_new", "miou_all", "pixel_accuracy", "mean_f1"):
            if entry.get(key) is not None:
                writer.add_scalar(f"eval/{key}", float(entry[key]), step)
        for name, value in (entry.get("per_class_iou") or {}).items():
            if value is not None:
                writer.add_scalar(f"iou/{name}", float(value), step)
