"""Model cards: what a trained run (or one checkpoint) is, learnt from what, and how it scored.

A card is built once as plain data (:class:`Card`: sections of fields, tables, text, code and
images) from a run folder (:func:`run_card`: task.json, config.yaml, report.json, the last
checkpoint's classes, ``steps/step_T_scenes.txt``) or from a checkpoint's metadata alone
(:func:`checkpoint_card`), then rendered as Markdown (``RUN/model_card.md``, written by
:func:`write_model_card`) or as rich tables by ``geoidec info``, so both say the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoidec.checkpoint import FORMAT, resolve_checkpoint
from geoidec.data.base import DataError
from geoidec.run_folder import RunFolder
from geoidec.runs.figures import planned_figures
from geoidec.runs.reports import classes_table, steps_table
from geoidec.files import write_text

CARD_NAME = "model_card.md"

#: Settings of ``config.method`` that matter per method (None: every setting).
METHOD_KEYS: dict[str, tuple[str, ...] | None] = {
    "idec": None,
    "mib": ("logit_kd", "lambda_logit_kd", "kd_temperature"),
    "plop": ("lambda_pod", "lambda_pod_logits", "plop_adaptive_factor", "pseudo_update_every"),
    "finetune": (),
    "joint": (),
}


# ------------------------------------------------------------------------ card model
@dataclass(frozen=True)
class Swatch:
    """A class colour (``#rrggbb``), drawn as a small square where the renderer can."""

    hex: str


Cell = str | Swatch


@dataclass
class Fields:
    """``name: value`` lines."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    """A table; ``right`` lists the columns aligned right (numbers)."""

    header: list[str]
    rows: list[list[Cell]]
    right: tuple[int, ...] = ()


@dataclass
class Text:
    text: str


@dataclass
class Code:
    text: str


@dataclass
class Image:
    """A figure, ``path`` relative to the run folder."""

    alt: str
    path: str


Block = Fields | Table | Text | Code | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Card:
    """A model card as data: a title, the folder figure paths are relative to, sections."""

    title: str
    sections: list[Section]
    base: Path | None = None


# --------------------------------------------------------------------------- reading
def read_checkpoint_meta(path: str | Path, step: int | None = None) -> dict[str, Any]:
    """A checkpoint's metadata (every key but ``state_dict``) without rebuilding its model.

    ``path`` is a ``step_T.pt`` file or a run folder (its last step, or ``step``); the weights
    are memory-mapped, not read, where the file allows it. Unreadable files raise
    :class:`DataError`.
    """
    import torch

    file = resolve_checkpoint(path, step)
    if not file.is_file():
        raise DataError(f"{file} is not a file (pass a run folder or a step_N.pt file)")
    try:
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip archive: legacy format cannot be memory-mapped
            payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise DataError(f"{file} is not a readable geoidec checkpoint "
                        f"({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{file} is not a geoidec checkpoint (format {FORMAT} expected)")
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["path"] = str(file)
    return meta


# ------------------------------------------------------------------------- formatting
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(_num(v, digits) for v in value)
    return str(value)


def _learnt_at(task: dict[str, Any], method: str) -> dict[str, str]:
    """Class name -> the step it was learnt in (from the schedule)."""
    names = list(task.get("class_names") or [])
    steps = list(task.get("steps") or [])
    out: dict[str, str] = {}
    for t, step in enumerate(steps):
        for index in step:
            if 1 <= int(index) <= len(names):
                out[names[int(index) - 1]] = str(t)
    if method == "joint" and steps:
        last = str(len(steps) - 1)
        out = {name: f"{last} (joint: all at once)" for name in out}
    return out


def _classes_section(classes: Sequence[dict[str, Any]], task: dict[str, Any], method: str,
                     eval_background: bool | None) -> Section:
    learnt = _learnt_at(task, method)
    rows: list[list[Cell]] = []
    if classes:
        for c in classes:
            index = int(c.get("index", len(rows)))
            color = c.get("color")
            swatch: Cell = Swatch("#{:02x}{:02x}{:02x}".format(*color)) if color else "-"
            if index == 0:
                step = "background" + (" (not evaluated)" if eval_background is False else "")
            else:
                step = learnt.get(c["name"], "-")
            rows.append([str(index), c["name"], swatch, step])
    else:  # no checkpoint to read colours from: the schedule's classes, model order unknown
        for name, step in learnt.items():
            rows.append(["-", name, "-", step])
    return Section("Classes", [
        Text("Model output index, class, display colour (also in the predicted GeoTIFF's "
             "colour table and QGIS style) and the step the class was learnt in."),
        Table(["index", "class", "colour", "learnt at step"], rows, right=(0,)),
    ])


def _input_section(meta: dict[str, Any]) -> Section:
    bands = meta.get("bands")
    names = list(meta.get("band_names") or [])
    norm = meta.get("normalization") or {}
    count = int(bands) if bands is not None else len(names)
    def stat(key: str, i: int) -> str:
        values = norm.get(key) or []
        return _num(values[i]) if i < len(values) else "-"

    rows: list[list[Cell]] = [
        [str(i + 1), names[i] if i < len(names) else "-",
         *(stat(k, i) for k in ("low", "high", "mean", "std"))]
        for i in range(count)
    ]
    res = meta.get("resolution")
    crs = meta.get("crs")
    resolution = ("-" if not res else " × ".join(_num(r) for r in res)
                  + (" (CRS units)" if crs else " (pixel units of the source)"))
    rgb = meta.get("rgb_bands")
    fields = [
        ("bands", f"{count}" + (f" ({', '.join(names)})" if names else "")),
        ("RGB bands (augmentation)", _num([names[i] if i < len(names) else i for i in rgb])
         if rgb else "none"),
        ("tile size", f"{_num(meta.get('tile_size'))} px"),
        ("tile overlap", f"{_num(meta.get('overlap'))} px"),
        ("resolution of the training data", resolution),
        ("CRS of the training data", str(crs) if crs else "none (pixel space)"),
    ]
    return Section("Input", [
        Fields(fields),
        Text("Normalisation (per band): x01 = clip((x - low) / (high - low), 0, 1), then "
             "(x01 - mean) / std. Prediction applies the same statistics."),
        Table(["band", "name", "low", "high", "mean", "std"], rows, right=(0, 2, 3, 4, 5)),
    ])


def method_settings(method: str, method_config: dict[str, Any]) -> list[tuple[str, str]]:
    """The settings of ``config.method`` relevant to ``method`` (every one for IDEC and for
    methods this version does not know)."""
    keys = METHOD_KEYS.get(method)
    if keys is None:
        keys = tuple(k for k in method_config if k != "name")
    return [(k, _num(method_config[k])) for k in keys if k in method_config]


def _method_section(method: str, label: str | None, config: dict[str, Any],
                    model: dict[str, Any] | None) -> Section:
    settings = method_settings(method, config.get("method") or {})
    head = [("method", method)]
    if label and label != method:
        head.append(("label", label))
    arch = dict(model or config.get("model") or {})
    if isinstance(arch.get("classes_per_step"), list | tuple):
        arch["classes_per_step"] = " + ".join(str(c) for c in arch["classes_per_step"])
    if arch:
        head.append(("model", ", ".join(f"{k} {_num(arch[k])}" for k in (
            "backbone", "output_stride", "aspp_channels", "in_channels", "classes_per_step")
            if arch.get(k) is not None)))
    train = config.get("train") or {}
    if train:
        head.append(("training", ", ".join(f"{k} {_num(train[k])}" for k in (
            "iterations", "iterations_incremental", "epochs", "batch_size", "lr",
            "lr_incremental", "seed") if train.get(k) is not None)))
    blocks: list[Block] = [Fields(head)]
    if settings:
        blocks.append(Table(["setting", "value"], [[k, v] for k, v in settings], right=(1,)))
    else:
        blocks.append(Text(f"`{method}` has no method-specific settings."))
    return Section("Method", blocks)


def _data_section(meta: dict[str, Any], config: dict[str, Any],
                  report: dict[str, Any] | None, scenes: dict[int, list[str]]) -> Section:
    dataset = meta.get("dataset") or {}
    if not isinstance(dataset, dict):
        dataset = {"name": dataset}
    fields = [("dataset", str(dataset.get("name", "-")))]
    for key, value in dataset.items():
        if key != "name" and value is not None:
            fields.append((key, _num(value)))
    task = meta.get("task") or {}
    if isinstance(task, dict) and task.get("spec"):
        fields.append(("task", f"{task['spec']} ({len(task.get('steps') or [])} steps)"))
    protocol = (config.get("data") or {}).get("protocol")
    if protocol:
        fields.append(("protocol", str(protocol)))
    blocks: list[Block] = []
    if scenes:
        union = sorted({s for names in scenes.values() for s in names})
        per_step = ", ".join(f"step {t}: {len(v)}" for t, v in scenes.items())
        fields.append(("training scenes", f"{len(union)} ({per_step})"))
    if report and report.get("steps"):
        info = report["steps"][-1].get("eval") or {}
        fields.append(("evaluation", f"{_num(info.get('scenes'))} "
                       f"`{info.get('split', report.get('eval_split', '-'))}` scene(s), whole "
                       "stitched scenes"))
    blocks.append(Fields(fields))
    if scenes:
        blocks.append(Table(["step", "training scenes"],
                            [[str(t), ", ".join(v)] for t, v in scenes.items()], right=(0,)))
    return Section("Training data", blocks)


def _lineage_section(meta: dict[str, Any]) -> Section | None:
    """Where the model comes from, for a model taught new classes with ``--from``: its
    parent (checkpoint and SHA-256) and every step of its history."""
    lineage = meta.get("lineage") or []
    parent = meta.get("parent") or {}
    if not lineage and not parent:
        return None
    blocks: list[Block] = []
    if parent:
        blocks.append(Fields([("parent checkpoint", str(parent.get("checkpoint", "-"))),
                              ("parent step", _num(parent.get("step"))),
                              ("parent sha256", str(parent.get("sha256", "-")))]))
    blocks.append(Table(["step", "classes learnt", "dataset", "method", "run"],
                        [[_num(e.get("step")), ", ".join(e.get("classes") or []),
                          str(e.get("dataset", "-")), str(e.get("method") or "-"),
                          str(e.get("run", "-"))] for e in lineage], right=(0,)))
    return Section("Lineage", blocks)


def _predict_section(model_path: str, meta: dict[str, Any]) -> Section:
    names = list(meta.get("band_names") or [])
    bands = meta.get("bands")
    need = f"{bands} band(s)" + (f" in this order: {', '.join(names)}" if names else "")
    res = meta.get("resolution")
    near = f", at about {' × '.join(_num(r) for r in res)} per pixel" if res else ""
    return Section("How to predict", [
        Code(f"geoidec predict SCENE.tif --model {model_path} --out OUT.tif"),
        Text(f"SCENE.tif needs {need}{near}. OUT.tif is a class GeoTIFF (COG) with this "
             "card's names and colours, and OUT.qml a QGIS style beside it."),
    ])


# ----------------------------------------------------------------------------- cards
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
    steps = [e["step"] for e in report["steps"]]
    summary = Fields([
        ("run folder", str(run_dir)),
        ("steps trained", ", ".join(str(s) for s in steps) or "none yet"),
        ("last checkpoint", _relative(ckpt["path"], run_dir) if ckpt else "none yet"),
        ("seed", _num(report.get("seed"))),
        ("geoidec", str(report.get("geoidec_version", "-"))),
    ])
    metrics: list[Block] = [
        Text("mIoU in percent, whole stitched scenes of the evaluation split: old = step-0 "
             "classes, new = classes learnt after step 0."),
        table_from_markdown(steps_table(report)),
        Text("IoU per class and step (percent; '-' where undefined or not yet learnt):"),
        table_from_markdown(classes_table(report)),
    ] if report["steps"] else [Text("No step evaluated yet.")]
    figures: list[Block] = [Image(_figure_alt(p), p) for p in planned_figures(report)]
    sections = [
        Section("Summary", [summary]),
        _classes_section(ckpt.get("classes") or [], task, method, meta.get("eval_background")),
        _input_section(meta),
        _method_section(method, report.get("label"), config, ckpt.get("model")),
        _data_section(meta, config, report, run.read_scene_lists()),
        *[x for x in [_lineage_section(meta)] if x is not None],
        Section("Metrics per step", metrics),
        Section("Figures", figures),
        _predict_section(str(run_dir), meta),
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
        ("step", _num(meta.get("step"))),
        ("classes learnt at this step", ", ".join(meta.get("step_classes") or []) or "-"),
        ("format", str(meta.get("format"))),
        ("geoidec", str(meta.get("geoidec_version", "-"))),
    ])
    sections = [
        Section("Summary", [summary]),
        _classes_section(meta.get("classes") or [], task, method, meta.get("eval_background")),
        _input_section(meta),
        _method_section(method, None, config, meta.get("model")),
        _data_section(meta, config, None, {}),
        *[x for x in [_lineage_section(meta)] if x is not None],
        _predict_section(meta["path"], meta),
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


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return path


def _figure_alt(path: str) -> str:
    return {
        "miou_per_step.png": "mIoU per step (old, new, all classes)",
        "iou_heatmap.png": "IoU per class and step",
        "confusion_last_step.png": "Row-normalised confusion matrix of the last step",
        "pseudo_labels.png": "Pseudo-labelled pixels per old class and step",
    }.get(Path(path).name, Path(path).stem)


# ---------------------------------------------------------------------------- markdown
def table_from_markdown(text: str) -> Table:
    """A pipe table (as :mod:`geoidec.runs.reports` writes them) as a :class:`Table`;
    :func:`card_markdown` renders it back to the same text."""
    lines = [line.strip() for line in text.strip().splitlines()]

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in
                re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    header, rule, rows = cells(lines[0]), cells(lines[1]), [cells(x) for x in lines[2:]]
    right = tuple(i for i, r in enumerate(rule) if r.endswith(":"))
    return Table(header, [list(r) for r in rows], right=right)


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Swatch):
        return (f'<span style="background:{cell.hex}">&nbsp;&nbsp;&nbsp;&nbsp;</span> '
                f"`{cell.hex}`")
    return cell.replace("|", "\\|")


def _md_block(block: Block) -> str:
    if isinstance(block, Fields):
        return "\n".join(f"- **{k}**: {v}" for k, v in block.items)
    if isinstance(block, Table):
        head = "| " + " | ".join(block.header) + " |"
        rule = "|" + "|".join("---:" if i in block.right else "---"
                              for i in range(len(block.header))) + "|"
        rows = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join([head, rule, *rows])
    if isinstance(block, Code):
        return f"```bash\n{block.text}\n```"
    if isinstance(block, Image):
        return f"![{block.alt}]({block.path})"
    return block.text


def card_markdown(card: Card) -> str:
    """Render a card as Markdown (GitHub-flavoured; colour squares as inline HTML)."""
    parts = [f"# {card.title}", ""]
    for section in card.sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            parts += [_md_block(block), ""]
    return "\n".join(parts)


def model_card(run_dir: Path) -> str:
    """The Markdown model card of a run folder."""
    return card_markdown(run_card(Path(run_dir)))


def write_model_card(run_dir: Path) -> Path:
    """Write ``RUN/model_card.md`` atomically and return its path."""
    run_dir = Path(run_dir)
    return write_text(run_dir / CARD_NAME, model_card(run_dir))


__all__ = ["Card", "Section", "Fields", "Table", "Text", "Code", "Image", "Swatch",
           "read_checkpoint_meta", "run_card", "checkpoint_card", "describe", "card_markdown",
           "model_card", "write_model_card", "method_settings"]
