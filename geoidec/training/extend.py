"""``geoidec train NEW.yaml --from RUN``: teach a model the user already has new classes,
from labels of the new classes only, without the data it was trained on.

The parent (a run folder, whose last checkpoint is used, or a ``step_T.pt`` file) brings its
model, classes, normalisation statistics and lineage. The new dataset's classes are matched
to the model's by name (case, spaces, ``_`` and ``-`` ignored): a known name keeps its output
index, a new name becomes a new output (in the dataset's order). Label values the dataset
does not list are background, as in the overlapped protocol, so the method's pseudo-labels
recover the old classes there. The step is step T + 1 of the parent's lineage, trained like
any incremental step of :class:`~geoidec.training.run.IncrementalRun` (same chips, seeds,
method and settings), which makes ``--from`` give the metrics the one-dataset schedule gives.

Evaluation is by class name: the new dataset's test split scores the classes it lists (its
background is not scored: it may hold old classes), and every ``--eval-on`` dataset scores
the classes it lists, pooled into one confusion matrix, which then gives the step's
old / new / all mIoU (old = the lineage's step-0 classes).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.config import Config
from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.data.base import ClassInfo, DataError, DatasetSpec, Scene, open_raster
from geoidec.data.normalization import Normalization, sample_pixels, with_fill
from geoidec.errors import UsageError
from geoidec.evaluation.by_name import evaluate_by_name, summary_by_name
from geoidec.evaluation.evaluate import evaluate_scenes_sharded, mixed_precision
from geoidec.evaluation.summary import forgetting
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel
from geoidec.progress import window_bar
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule, normalise_name
from geoidec.training.resume import ResumeState
from geoidec.training.run import IncrementalRun, RunResult, resume_state, start

#: A band whose mean (in the model's [0, 1] scaling) moved by more than this many of the
#: training data's standard deviations, or whose spread changed by more than this factor,
#: is reported as a shift of the image statistics.
SHIFT_STDS = 2.0
SPREAD_FACTOR = 2.0


@dataclass(frozen=True)
class Parent:
    """The model a ``--from`` step starts from."""

    #: What the user passed (run folder or checkpoint file).
    source: Path
    checkpoint: Checkpoint
    #: SHA-256 of the checkpoint file.
    digest: str
    #: One entry per step of the model's history: step, classes, dataset, run, checkpoint.
    lineage: list[dict[str, Any]]

    @property
    def step(self) -> int:
        return int(self.checkpoint.meta["step"])

    @property
    def names(self) -> list[str]:
        """Class names by model index, background first."""
        return [c.name for c in self.checkpoint.classes]


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def lineage_of(meta: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The steps behind a checkpoint: its own ``lineage`` (``--from`` runs), or, for a run of
    one dataset, the steps of its schedule up to the checkpoint's step."""
    if meta.get("lineage"):
        return [dict(e) for e in meta["lineage"]]
    schedule = TaskSchedule.from_dict(meta["task"])
    dataset = meta.get("dataset") or {}
    name = dataset.get("name") if isinstance(dataset, dict) else str(dataset)
    run = RunFolder.of_checkpoint(path).path
    return [{"step": t, "classes": schedule.step_class_names(t), "dataset": name,
             "run": str(run.resolve()), "method": meta.get("method")}
            for t in range(min(int(meta["step"]), schedule.num_steps - 1) + 1)]


def load_parent(source: Path) -> Parent:
    """The parent model of a ``--from`` step (a run folder's last checkpoint, or a file)."""
    ckpt = load_checkpoint(source)
    return Parent(Path(source), ckpt, file_digest(ckpt.path), lineage_of(ckpt.meta, ckpt.path))


@dataclass(frozen=True)
class ClassMatch:
    """The new dataset's classes against the parent model's."""

    #: Dataset classes new to the model (dataset order) and their dataset indices.
    new: tuple[ClassInfo, ...]
    new_indices: tuple[int, ...]
    #: Dataset classes the model knows: name -> model index.
    known: dict[str, int]
    #: Dataset index -> model index (background 0, ignore 255).
    lut: np.ndarray
    #: The lineage schedule: the model's classes in model order, one step per lineage step.
    schedule: TaskSchedule
    #: Every class in model order, background first (parent's, then the new ones).
    classes: tuple[ClassInfo, ...] = field(default=())


def match_classes(parent: Parent, dataset: DatasetSpec) -> ClassMatch:
    """Match ``dataset``'s classes to the parent model's by name."""
    model = {normalise_name(n): i for i, n in enumerate(parent.names) if i > 0}
    new, new_indices, known = [], [], {}
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[BACKGROUND] = BACKGROUND
    for index, info in enumerate(dataset.classes, start=1):
        hit = model.get(normalise_name(info.name))
        if hit is None:
            new.append(info)
            new_indices.append(index)
            lut[index] = len(parent.names) + len(new) - 1
        else:
            known[info.name] = hit
            lut[index] = hit
    if not new:
        raise DataError(f"{dataset.name} lists no class the model does not know (the model "
                        f"has {', '.join(parent.names[1:])}); list the new classes in the "
                        "dataset YAML")
    new = _with_codes(parent, dataset, new)
    counts = list(parent.checkpoint.model.classes_per_step)
    counts[0] -= 1  # background
    counts.append(len(new))
    names = [*parent.names[1:], *(c.name for c in new)]
    steps, start = [], 1
    for count in counts:
        steps.append(tuple(range(start, start + count)))
        start += count
    schedule = TaskSchedule(class_names=tuple(names), steps=tuple(steps),
                            spec="-".join(str(c) for c in counts))
    classes = (*parent.checkpoint.classes, *new)
    return ClassMatch(tuple(new), tuple(new_indices), known, lut, schedule, classes)


def _with_codes(parent: Parent, dataset: DatasetSpec, new: list[ClassInfo]) -> list[ClassInfo]:
    """The new classes' map codes: the dataset's, when the model writes codes (they must not
    be the code of a class it knows, its background or its nodata); none when the model
    writes output indices (ISPRS, VOC, ADE)."""
    ckpt = parent.checkpoint
    if ckpt.codes is None:
        return [replace(c, code=None) for c in new]
    taken = {code: c.name for code, c in zip(ckpt.codes, ckpt.classes, strict=True)}
    taken.setdefault(ckpt.nodata_code, "nodata")
    for info in new:
        if info.code is None:
            raise DataError(f"{dataset.name}: class '{info.name}' has no code but the model "
                            "writes codes; give it a value (or code:) between 1 and 254")
        if info.code in taken:
            raise DataError(f"{dataset.name}: class '{info.name}' has code {info.code}, which "
                            f"the model uses for '{taken[info.code]}'; give it another code "
                            "(code: N in the dataset YAML)")
    return new


def step_plan(parent: Parent, match: ClassMatch) -> StepPlan:
    """The one incremental step of a ``--from`` run (step T + 1 of the lineage)."""
    schedule = match.schedule
    last = schedule.num_steps - 1
    old = schedule.new_classes(0)
    seen = schedule.seen_classes(last)
    return StepPlan(
        step=parent.step + 1,
        classes_per_step=tuple(schedule.classes_per_step()),
        lut=match.lut,
        chip_classes=match.new_indices,
        old_classes=old,
        new_classes=tuple(c for c in seen if c not in old),
        step_classes=schedule.new_classes(last),
        incremental=True,
    )


# ----------------------------------------------------------------------------- guard-rails
def _first_image(dataset: DatasetSpec) -> tuple[int, tuple[float, float], str | None, str]:
    """(band count read, pixel size, CRS, path) of the first training image."""
    scene = dataset.scenes("train")[0]
    with open_raster(scene.image) as src:
        count = len(scene.bands) if scene.bands else src.count
        return count, (abs(src.res[0]), abs(src.res[1])), (
            src.crs.to_string() if src.crs else None), str(scene.image)


def check_inputs(parent: Parent, dataset: DatasetSpec, normalization: Normalization,
                 stats_pixels: int) -> list[str]:
    """Errors (raised, one line) and warnings (returned) about new images unlike the model's
    training data: band count and names must match; pixel size, CRS and image statistics
    may differ, with a warning naming both values."""
    meta = parent.checkpoint.meta
    bands, res, crs, image = _first_image(dataset)
    if bands != int(meta["bands"]):
        raise DataError(f"{image} has {bands} band(s) but the model of {parent.source} was "
                        f"trained on {meta['bands']}; select the same bands (the dataset "
                        "YAML's bands key) in the same order")
    theirs = [str(n) for n in meta.get("band_names") or []]
    mine = [str(n) for n in dataset.band_names]
    if theirs and mine and theirs != mine:
        raise DataError(f"{dataset.name} has bands {', '.join(mine)} but the model of "
                        f"{parent.source} was trained on {', '.join(theirs)}; list the same "
                        "bands in the same order")
    warnings = []
    trained_res = meta.get("resolution")
    if trained_res and max(max(res) / max(trained_res), max(trained_res) / max(res)) > 1.5:
        warnings.append(f"warning: {image} has {res[0]:g} x {res[1]:g} pixels but the model "
                        f"was trained on {trained_res[0]:g} x {trained_res[1]:g}; resample "
                        "the new images to the model's pixel size (or expect poor results)")
    if meta.get("crs") and crs and crs != meta["crs"]:
        warnings.append(f"warning: {image} is in {crs} but the model was trained on images "
                        f"in {meta['crs']}; the pixel size is what matters, check it")
    shifted = statistics_shift(dataset, normalization, stats_pixels)
    if shifted:
        warnings.append("warning: the new images' statistics differ from the model's "
                        f"training data in {'; '.join(shifted)} (in the model's scaled units); "
                        "another sensor, season or scaling? The model's normalisation is kept")
    return warnings


def statistics_shift(dataset: DatasetSpec, normalization: Normalization,
                     stats_pixels: int) -> list[str]:
    """Bands whose pixels, scaled as the model scales them, have a mean more than
    :data:`SHIFT_STDS` training standard deviations away from the training mean, or a spread
    :data:`SPREAD_FACTOR` times wider or narrower."""
    scenes = with_fill(dataset.scenes("train"), normalization)
    per_scene = max(1024, stats_pixels // max(len(scenes), 1))
    pixels = np.concatenate([sample_pixels(s, per_scene)[0] for s in scenes])
    if not len(pixels):
        return []
    unit = np.asarray(normalization.to_unit(pixels.T[:, :, None]))[:, :, 0]  # (C, N)
    mean, std = unit.mean(axis=1), unit.std(axis=1)
    names = list(dataset.band_names) or [str(b + 1) for b in range(len(mean))]
    out = []
    for b, (m, s) in enumerate(zip(mean, std, strict=True)):
        m0, s0 = normalization.mean[b], normalization.std[b]
        if abs(m - m0) > SHIFT_STDS * s0 or not 1 / SPREAD_FACTOR <= (s / s0) <= SPREAD_FACTOR:
            label = f"band {b + 1}" + (f" ({names[b]})" if dataset.band_names else "")
            out.append(f"{label}: mean {m:.2f} vs {m0:.2f}, spread {s:.2f} vs {s0:.2f}")
    return out


# ----------------------------------------------------------------------------- the run
class ExtendRun(IncrementalRun):
    """One incremental step from a parent model on a dataset of new labels (``--from``)."""

    def __init__(self, dataset: DatasetSpec, parent: Parent, config: Config, run_dir: Path,
                 echo: Callable[[str], None] = print, label: str | None = None,
                 eval_on: Sequence[DatasetSpec] = (), resume: ResumeState | None = None
                 ) -> None:
        if config.method.name == "joint":
            raise UsageError("joint learns every class at once from one dataset and cannot start "
                            "from a model; use --method idec (or mib, plop, finetune) with "
                            "--from")
        self.parent = parent
        self.match = match_classes(parent, dataset)
        # the map keeps the model's nodata code whatever the new dataset says
        dataset = replace(dataset, nodata_code=parent.checkpoint.nodata_code)
        self.eval_on = list(eval_on)
        arch = {k: v for k, v in parent.checkpoint.model.config.items()
                if k in ("backbone", "aspp_channels", "output_stride", "first_stride", "head")}
        config = config.override({f"model.{k}": v for k, v in arch.items()})  # the parent's
        super().__init__(dataset, self.match.schedule, config, run_dir, echo, label, None,
                         resume)

    def _evaluation_scenes(self) -> tuple[Scene, ...]:
        return tuple(self.dataset.splits.get(self.config.eval.split, ()))

    def _statistics(self) -> Normalization:
        """The parent's statistics (the model's input scaling), after the guard-rails."""
        normalization = self.parent.checkpoint.normalization
        for message in check_inputs(self.parent, self.dataset, normalization,
                                    self.config.data.stats_pixels):
            self.echo(message)
        return normalization

    def _unlisted_message(self, found: dict[float, list[str]]) -> str | None:
        if not found:
            return None
        values = ", ".join(f"{v:g}" for v in sorted(found)[:10])
        return (f"label value(s) {values} are not listed in {self.dataset.name}: background, "
                "where the method's pseudo-labels recover the model's old classes (and not "
                "scored in this dataset's test split)")

    def plans(self) -> list[StepPlan]:
        return [step_plan(self.parent, self.match)]

    def classes_for(self, count: int) -> list[ClassInfo]:
        return list(self.match.classes[:count])

    def _initial_model(self) -> SegmentationModel | None:
        return self.parent.checkpoint.model.eval()

    def _task_meta(self, normalization: Normalization) -> dict[str, Any]:
        meta = super()._task_meta(normalization)
        plan = self.plans()[0]
        meta["parent"] = {"source": str(self.parent.source.resolve()),
                          "checkpoint": str(self.parent.checkpoint.path.resolve()),
                          "step": self.parent.step, "sha256": self.parent.digest}
        meta["lineage"] = [*self.parent.lineage, {
            "step": plan.step, "classes": [c.name for c in self.match.new],
            "dataset": self.dataset.name, "run": str(Path(self.run_dir).resolve()),
            "method": self.method.name, "from": str(self.parent.checkpoint.path.resolve()),
            "from_sha256": self.parent.digest}]
        return meta

    def _evaluate_step(self, plan: StepPlan, model: SegmentationModel,
                       normalization: Normalization, names: list[str],
                       history: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        own = [(self.dataset, cfg.eval.split)] if self.eval_scenes else []
        others = [(d, "test") for d in self.eval_on]

        def evaluate(scenes: Sequence[Scene], decoder: Any, lut: np.ndarray) -> np.ndarray:
            with window_bar(f"step {plan.step}: evaluating", self.shows_progress) as progress:
                return evaluate_scenes_sharded(
                    model, scenes, decoder, normalization, lut, tile=self.eval_tile,
                    overlap=cfg.eval.overlap, batch_size=cfg.eval.batch_size,
                    device=self.device,
                    amp=mixed_precision(self.device, cfg.train.precision), progress=progress)

        self.echo(f"step {plan.step}: evaluating on " + (", ".join(
            f"{d.name} ({split})" for d, split in own + others) or "nothing (no test split "
            "and no --eval-on)"))
        records: list[Any] = []  # evaluate_by_name() results, then their records
        for targets in (own, others):
            records.append(evaluate_by_name(evaluate, names, targets, normalization,
                                            self.echo))
        # the --eval-on datasets give the step's scores when there are any
        matrix, scored, primary = records[1] if records[1][0] is not None else records[0]
        records = [*records[0][2], *records[1][2]]
        self._last_cm = (matrix if matrix is not None
                         else np.zeros((len(names), len(names)), dtype=np.int64))
        summary = summary_by_name(self._last_cm, names, scored, plan.old_classes)
        evaluations = []
        for r in records:
            part = summary_by_name(r["matrix"], names, r["scored"], plan.old_classes)
            evaluations.append({"dataset": r["dataset"], "split": r["split"],
                                "scenes": r["scenes"], "classes": r["classes"],
                                **{k: part[k] for k in ("miou_old", "miou_new", "miou_all")}})
        old = [c for c in scored if c == 0 or c in plan.old_classes]
        return {
            "step": plan.step,
            "old_classes": [names[c] for c in old],
            "new_classes": [names[c] for c in scored if c not in old],
            "step_classes": [names[c] for c in plan.step_classes],
            **summary,
            "forgetting": forgetting(history, summary["per_class_iou"]) if history else {},
            "eval": {"split": ", ".join(f"{r['dataset']} {r['split']}" for r in primary),
                     "scenes": sum(r["scenes"] for r in primary),
                     "seconds": round(time.perf_counter() - started, 2)},
            "evaluations": evaluations,
        }


def extend_run(dataset: DatasetSpec, parent_path: Path, config: Config, out: Path, *,
               eval_on: Sequence[DatasetSpec] = (), overwrite: bool = False,
               echo: Callable[[str], None] = print, label: str | None = None,
               resume: Path | None = None) -> RunResult:
    """``geoidec train DATASET --from PARENT``: check everything, then train the one step.
    The parent run is only read."""
    parent = load_parent(parent_path)
    state = resume_state(resume, overwrite)
    run = ExtendRun(dataset, parent, config, Path(resume or out), echo, label, eval_on, state)
    if state is not None:
        state.check(dataset, run.schedule, run.config)
        run.label = label or (state.report or {}).get("label") or run.label
    echo(f"from {parent.checkpoint.path} (step {parent.step}: "
         f"{', '.join(parent.names[1:])}); new: {', '.join(c.name for c in run.match.new)}"
         + (f"; known: {', '.join(run.match.known)}" if run.match.known else ""))
    return start(run, Path(resume or out), overwrite)


__all__ = [
    "ClassMatch",
    "ExtendRun",
    "extend_run",
    "Parent",
    "check_inputs",
    "lineage_of",
    "load_parent",
    "match_classes",
    "statistics_shift",
    "step_plan",
]

