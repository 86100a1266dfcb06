"""The sections a model card shares between a run folder and a single checkpoint: classes
and colours, input bands and normalisation, method and its settings, training data, lineage
and how to predict, each built from task.json / checkpoint metadata, config.yaml and
report.json as plain :mod:`geoidec.runs.card` blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geoidec.config.choices import TTA_VIEWS, TTA_WORDS
from geoidec.runs.card import Block, Cell, Code, Fields, Section, Swatch, Table, Text
from geoidec.runs.reports import tta_note

#: Settings of ``config.method`` that matter per method (None: every setting).
METHOD_KEYS: dict[str, tuple[str, ...] | None] = {
    "idec": None,
    "mib": ("logit_kd", "lambda_logit_kd", "kd_temperature"),
    "plop": ("lambda_pod", "lambda_pod_logits", "plop_adaptive_factor", "pseudo_update_every"),
    "finetune": (),
    "joint": (),
}


def format_value(value: Any, digits: int = 4) -> str:
    """A value as the card shows it: ``-`` for None, yes/no, floats to ``digits`` significant
    digits, lists joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v, digits) for v in value)
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


def classes_section(classes: Sequence[dict[str, Any]], task: dict[str, Any], method: str,
                    eval_background: bool | None) -> Section:
    """Each class's output index, name, colour and the step it was learnt in (the schedule's
    classes alone when there is no checkpoint to read colours from)."""
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


def input_section(meta: dict[str, Any]) -> Section:
    """The bands the model reads, their normalisation, tile size, resolution and CRS."""
    bands = meta.get("bands")
    names = list(meta.get("band_names") or [])
    norm = meta.get("normalization") or {}
    count = int(bands) if bands is not None else len(names)
    def stat(key: str, i: int) -> str:
        values = norm.get(key) or []
        return format_value(values[i]) if i < len(values) else "-"

    rows: list[list[Cell]] = [
        [str(i + 1), names[i] if i < len(names) else "-",
         *(stat(k, i) for k in ("low", "high", "mean", "std"))]
        for i in range(count)
    ]
    res = meta.get("resolution")
    crs = meta.get("crs")
    resolution = ("-" if not res else " × ".join(format_value(r) for r in res)
                  + (" (CRS units)" if crs else " (pixel units of the source)"))
    rgb = meta.get("rgb_bands")
    fields = [
        ("bands", f"{count}" + (f" ({', '.join(names)})" if names else "")),
        ("RGB bands (augmentation)",
         format_value([names[i] if i < len(names) else i for i in rgb]) if rgb else "none"),
        ("tile size", f"{format_value(meta.get('tile_size'))} px"),
        ("tile overlap", f"{format_value(meta.get('overlap'))} px"),
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
    return [(k, format_value(method_config[k])) for k in keys if k in method_config]


def method_section(method: str, label: str | None, config: dict[str, Any],
                   model: dict[str, Any] | None) -> Section:
    """The method, its label, the model architecture, the training settings and the method's
    own settings (:func:`method_settings`)."""
    settings = method_settings(method, config.get("method") or {})
    head = [("method", method)]
    if label and label != method:
        head.append(("label", label))
    arch = dict(model or config.get("model") or {})
    if isinstance(arch.get("classes_per_step"), list | tuple):
        arch["classes_per_step"] = " + ".join(str(c) for c in arch["classes_per_step"])
    if arch:
        head.append(("model", ", ".join(f"{k} {format_value(arch[k])}" for k in (
            "backbone", "output_stride", "aspp_channels", "in_channels", "classes_per_step")
            if arch.get(k) is not None)))
    train = config.get("train") or {}
    if train:
        head.append(("training", ", ".join(f"{k} {format_value(train[k])}" for k in (
            "iterations", "iterations_incremental", "epochs", "batch_size", "lr",
            "lr_incremental", "seed") if train.get(k) is not None)))
    blocks: list[Block] = [Fields(head)]
    if settings:
        blocks.append(Table(["setting", "value"], [[k, v] for k, v in settings], right=(1,)))
    else:
        blocks.append(Text(f"`{method}` has no method-specific settings."))
    return Section("Method", blocks)


def data_section(meta: dict[str, Any], config: dict[str, Any],
                 report: dict[str, Any] | None, scenes: dict[int, list[str]]) -> Section:
    """The dataset, task, protocol, the training scenes of each step (``scenes``) and the
    evaluation split (from ``report``, when there is one)."""
    dataset = meta.get("dataset") or {}
    if not isinstance(dataset, dict):
        dataset = {"name": dataset}
    fields = [("dataset", str(dataset.get("name", "-")))]
    for key, value in dataset.items():
        if key != "name" and value is not None:
            fields.append((key, format_value(value)))
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
        fields.append(("evaluation", f"{format_value(info.get('scenes'))} "
                       f"`{info.get('split', report.get('eval_split', '-'))}` scene(s), whole "
                       f"stitched scenes{tta_note(info.get('tta'))}"))
    blocks.append(Fields(fields))
    if scenes:
        blocks.append(Table(["step", "training scenes"],
                            [[str(t), ", ".join(v)] for t, v in scenes.items()], right=(0,)))
    return Section("Training data", blocks)


def lineage_section(meta: dict[str, Any]) -> Section | None:
    """Where the model comes from, for a model taught new classes with ``--from``: its
    parent (checkpoint and SHA-256) and every step of its history."""
    lineage = meta.get("lineage") or []
    parent = meta.get("parent") or {}
    if not lineage and not parent:
        return None
    blocks: list[Block] = []
    if parent:
        blocks.append(Fields([("parent checkpoint", str(parent.get("checkpoint", "-"))),
                              ("parent step", format_value(parent.get("step"))),
                              ("parent sha256", str(parent.get("sha256", "-")))]))
    blocks.append(Table(["step", "classes learnt", "dataset", "method", "run"],
                        [[format_value(e.get("step")), ", ".join(e.get("classes") or []),
                          str(e.get("dataset", "-")), str(e.get("method") or "-"),
                          str(e.get("run", "-"))] for e in lineage], right=(0,)))
    return Section("Lineage", blocks)


def predict_section(model_path: str, meta: dict[str, Any], config: dict[str, Any]) -> Section:
    """The ``geoidec predict`` command for this model and the input it needs (with ``--tta``
    when ``config`` scored with a test-time augmentation)."""
    names = list(meta.get("band_names") or [])
    bands = meta.get("bands")
    need = f"{bands} band(s)" + (f" in this order: {', '.join(names)}" if names else "")
    res = meta.get("resolution")
    near = f", at about {' × '.join(format_value(r) for r in res)} per pixel" if res else ""
    tta = (config.get("eval") or {}).get("tta") or "none"
    flag = "" if tta == "none" else f" --tta {tta}"
    text = (f"SCENE.tif needs {need}{near}. OUT.tif is a class GeoTIFF (COG) with this "
            "card's names and colours, and OUT.qml a QGIS style beside it.")
    if flag:
        text += (f" `{flag.strip()}` ({TTA_WORDS.get(tta, tta)}) makes the map as the scores "
                 "were made; without it prediction runs one forward per window, "
                 f"{len(TTA_VIEWS.get(tta, ()))} times faster.")
    return Section("How to predict", [
        Code(f"geoidec predict SCENE.tif --model {model_path} --out OUT.tif{flag}"),
        Text(text),
    ])


__all__ = ["METHOD_KEYS", "classes_section", "data_section", "format_value", "input_section",
           "lineage_section", "method_section", "method_settings", "predict_section"]
