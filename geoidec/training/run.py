"""A whole incremental run: step after step, train, evaluate, checkpoint, report.

Run folder::

    RUN/config.yaml            resolved configuration
    RUN/task.json              dataset, classes, schedule, method, normalisation
    RUN/checkpoints/step_T.pt  one self-sufficient checkpoint per step
    RUN/metrics/step_T.csv     per-class IoU/F1 of step T
    RUN/metrics/step_T_confusion.csv
    RUN/logs/step_T/metrics.csv  per-iteration loss terms (Lightning CSVLogger)
    RUN/logs/step_T/ranks.json   weight digest of every DDP process (several processes only)
    RUN/report.json, RUN/report.md
    RUN/checkpoints/step_T.partial.ckpt  the step in progress (removed when the step is done)

Every input is read (normalisation, label index, checks) before the first file is written, so
a bad input leaves no run folder behind. With several processes (:mod:`.distributed`) only
rank 0 writes; ``--resume`` (:mod:`.resume`) continues an interrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from geoidec import __version__
from geoidec.checkpoint import load_checkpoint, save_checkpoint
from geoidec.config import Config
from geoidec.data.base import ClassInfo, DataError, DatasetSpec, Scene, open_raster
from geoidec.data.chips import ChipDataset, build_class_grid, plan_chips
from geoidec.data.normalization import Normalization, compute_normalization, with_fill
from geoidec.data.transforms import TrainAugmentation
from geoidec.devices import barrier, resolve_device
from geoidec.errors import UsageError
from geoidec.evaluation.evaluate import evaluate_scenes_sharded, mixed_precision, step_summary
from geoidec.evaluation.summary import forgetting
from geoidec.files import write_error, write_json, write_text
from geoidec.methods import Method, StepPlan, build_method
from geoidec.models import SegmentationModel, build_model
from geoidec.progress import window_bar
from geoidec.run_folder import RunFolder
from geoidec.runs.reports import (
    confusion_csv,
    log_evaluation,
    pseudo_label_csv,
    report_markdown,
    step_csv,
)
from geoidec.tasks import TaskSchedule
from geoidec.training.distributed import (
    Launch,
    detect_launch,
    init_process_group,
    main_only,
)
from geoidec.training.loader import ChipSampler, chip_loader
from geoidec.training.module import StepModule
from geoidec.training.preflight import (
    nodata_messages,
    reading,
    unlisted_label_values,
    unlisted_values_message,
)
from geoidec.training.resume import PartialCheckpoint, ResumeState
from geoidec.training.step_state import StepOutcome, restore_method
from geoidec.training.trainer import build_trainer, fit_step, quiet_lightning

log = logging.getLogger("geoidec")


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]
    #: False in the other processes of a DDP launch (they print nothing).
    primary: bool = True


def check_logger(logger: str) -> None:
    """One line, before anything is read, when ``train.logger`` needs a missing package."""
    import importlib.util

    if logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise DataError("train.logger=tensorboard needs TensorBoard: pip install "
                        "'geoidec[tensorboard]' (or --set train.logger=csv)")


def prepare_run_dir(out: Path, overwrite: bool, create: bool = True) -> Path:
    """Create the run folder; refuse to reuse a non-empty one without ``overwrite``.

    ``create=False`` only checks (the other processes of a DDP launch: rank 0 creates it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"run folder {out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"run folder {out} exists and is not empty; pass --overwrite or "
                            "choose another --out, or --resume it")
        if create:
            shutil.rmtree(out)
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".geoidec-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise write_error(out, exc) from None
    return out


def model_classes(dataset: DatasetSpec, schedule: TaskSchedule, count: int) -> list[ClassInfo]:
    """Classes in model index order (background first), for ``count`` outputs."""
    by_name = {c.name: c for c in dataset.classes}
    names = schedule.model_class_names()[: count - 1]
    return [dataset.background] + [by_name[n] for n in names]


def _iterations(cfg: Config, plan: StepPlan, n_scenes: int, chips_per_step: int) -> int:
    """Optimiser steps of ``plan``; ``chips_per_step`` chips (batch x accumulation x
    processes) are consumed by each when ``train.epochs`` sets the length."""
    if cfg.train.epochs:
        chips = cfg.train.chips_per_scene * n_scenes
        return max(1, math.ceil(cfg.train.epochs * chips / chips_per_step))
    incremental = cfg.train.iterations_incremental
    if incremental is None:
        incremental = cfg.train.iterations
    if plan.incremental:
        return incremental
    return cfg.train.iterations + plan.extra_budget_steps * incremental


class IncrementalRun:
    """Trains and evaluates every step of a schedule with one method.

    ``resume`` (a run folder read by :class:`ResumeState`) skips its finished steps and
    continues the interrupted one from its partial checkpoint.
    """

    def __init__(
        self,
        dataset: DatasetSpec,
        schedule: TaskSchedule,
        config: Config,
        run_dir: Path,
        echo: Callable[[str], None] = print,
        label: str | None = None,
        step0_from: Path | None = None,
        resume: ResumeState | None = None,
    ) -> None:
        self.label = label or config.method.name
        self.step0_from = step0_from
        self.dataset = dataset
        self.schedule = schedule
        self.config = config
        self.run_dir = run_dir
        self.method: Method = build_method(config.method)
        self.device = resolve_device(config.train.device)
        check_logger(config.train.logger)
        self.launch: Launch = detect_launch(config.train, self.device)
        if self.launch.kind == "external" and self.device.type == "cuda":
            self.device = torch.device("cuda", self.launch.local_rank)
        self.echo = main_only(echo, self.launch)
        self.resume = resume
        self.train_scenes = dataset.scenes("train")
        if config.data.train_on_val:
            self.train_scenes += tuple(dataset.splits.get("val", ()))
        self.eval_scenes = self._evaluation_scenes()
        self.tile = config.data.tile_size
        self.eval_tile = config.eval.tile_size or self.tile
        if not 0 <= config.eval.overlap < self.eval_tile:
            raise DataError(f"eval.overlap must be in [0, {self.eval_tile}), got "
                            f"{config.eval.overlap}")
        self.report: dict[str, Any] = {}
        self.normalization: Normalization | None = None
        self.grids: list = []

    @property
    def folder(self) -> RunFolder:
        """Where this run writes (``run_dir`` is set again once the folder is prepared)."""
        return RunFolder(self.run_dir)

    def _evaluation_scenes(self) -> tuple[Scene, ...]:
        """Scenes evaluated after every step (``eval.split``; an error when there are none)."""
        return self.dataset.scenes(self.config.eval.split)

    @property
    def writes(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.launch.is_main

    @property
    def shows_progress(self) -> bool:
        """Whether this process draws progress bars (rank 0, without --quiet)."""
        return self.launch.is_main and self.config.train.progress

    # ----------------------------------------------------------------- setup
    def prepare(self) -> None:
        """Read every training input before anything is written: normalisation statistics
        (a resumed run keeps its own), the class index of every training label, the checks of
        :mod:`.preflight`, and the header of every evaluation scene."""
        if self.resume is not None:
            self.normalization = self.resume.normalization
        else:
            self.normalization = self._statistics()
        self.train_scenes = with_fill(self.train_scenes, self.normalization)
        self.eval_scenes = with_fill(self.eval_scenes, self.normalization)
        n_classes = len(self.dataset.classes) + 1
        self.echo("indexing label content of the training scenes")
        self.grids = []
        for scene in self.train_scenes:
            with reading(scene):
                self.grids.append(build_class_grid(scene, self.dataset.decoder, n_classes))
        for message in nodata_messages(self.grids, self.train_scenes):
            self.echo(message)
        unlisted = self._unlisted_message(unlisted_label_values(
            self.dataset, self.train_scenes + self.eval_scenes))
        if unlisted:
            self.echo(unlisted)
        for scene in self.eval_scenes:
            open_raster(scene.image).close()
            if scene.label is not None:
                open_raster(scene.label).close()

    def _unlisted_message(self, found: dict[float, list[str]]) -> str | None:
        """What to say about label values no class lists (they are background)."""
        return unlisted_values_message(found)

    def _statistics(self) -> Normalization:
        """The normalisation statistics of a new run: computed from the training scenes."""
        self.echo(f"computing normalisation statistics from {len(self.train_scenes)} "
                  "training scene(s)")
        found: list[str] = []
        normalization = compute_normalization(
            self.train_scenes, self.config.data.stats_pixels,
            band_names=self.dataset.band_names, messages=found)
        for message in found:  # undeclared fill values, treated as nodata from here on
            self.echo(message)
        return normalization

    def plans(self) -> list[StepPlan]:
        """The steps of this run, in order."""
        return self.method.plan(self.schedule)

    def classes_for(self, count: int) -> list[ClassInfo]:
        """Classes of a model of ``count`` outputs, in model order (background first)."""
        return model_classes(self.dataset, self.schedule, count)

    def _initial_model(self) -> SegmentationModel | None:
        """The model the first step starts from (None: a new one)."""
        return None

    def _task_meta(self, normalization: Normalization) -> dict[str, Any]:
        profile = _first_profile(self.train_scenes[0].image)
        return {
            "geoidec_version": __version__,
            "dataset": {"name": self.dataset.name, **{k: v for k, v in
                                                       self.dataset.meta.items()}},
            "method": self.method.name,
            "task": self.schedule.to_dict(),
            "bands": normalization.bands,
            "band_names": list(self.dataset.band_names),
            "rgb_bands": list(self.dataset.rgb_bands) if self.dataset.rgb_bands else None,
            "normalization": normalization.to_dict(),
            "tile_size": self.eval_tile,
            "overlap": self.config.eval.overlap,
            "resolution": profile["res"],
            "dtype": profile["dtype"],
            "crs": profile["crs"],
            "eval_background": self.dataset.eval_background,
            "seed": self.config.train.seed,
        }

    # ------------------------------------------------------------------ steps
    def _build_model(self, plan: StepPlan, previous: SegmentationModel | None,
                     bands: int) -> SegmentationModel:
        m = self.config.model
        if previous is None:
            return build_model(m.backbone, plan.classes_per_step, in_channels=bands,
                               aspp_channels=m.aspp_channels, output_stride=m.output_stride,
                               weights=m.weights, first_stride=m.first_stride, head=m.head,
                               band_names=self.dataset.band_names)
        model = copy.deepcopy(previous)
        model.requires_grad_(True)  # ``previous`` may be frozen (it was an old model before)
        model.add_step(plan.classes_per_step[-1])
        return model

    def _step_scenes(self, plan: StepPlan, grids: list) -> list[int]:
        """Training scenes step ``plan`` may use (protocol.md's overlapped/disjoint), listed
        in RUN/steps/step_T_scenes.txt so every run is auditable."""
        protocol = self.config.data.protocol
        if protocol not in ("overlapped", "disjoint"):
            raise DataError(f"data.protocol must be overlapped or disjoint, not '{protocol}'")
        keep = []
        for i, grid in enumerate(grids):
            totals = grid.totals()
            if totals[list(plan.chip_classes)].sum() == 0:
                continue
            if protocol == "disjoint" and totals[list(plan.future_classes)].sum() > 0:
                continue
            keep.append(i)
        if not keep:
            raise DataError(f"no training scene holds the classes of step {plan.step} under the "
                            f"{protocol} protocol")
        if self.writes:
            names = "\n".join(self.train_scenes[i].name for i in keep)
            write_text(self.folder.scene_list(plan.step), names + "\n")
        return keep

    @property
    def chips_per_iteration(self) -> int:
        """Chips one optimiser step consumes over all processes."""
        train = self.config.train
        return train.batch_size * train.accumulate * self.launch.world_size

    def _loader(self, plan: StepPlan, grids: list, normalization: Normalization,
                iterations: int, keep: list[int]) -> DataLoader:
        """The step's chip plan (deterministic under the seed) and its DataLoader."""
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + plan.step)
        chips = plan_chips(
            [grids[i] for i in keep], plan.chip_classes, iterations * self.chips_per_iteration,
            self.tile, generator, min_class_fraction=cfg.data.min_class_fraction,
            min_valid_fraction=cfg.data.min_valid_fraction, balanced=cfg.data.balanced_chips,
        )
        chips = [(keep[s], window) for s, window in chips]
        dataset = ChipDataset(self.dataset, self.train_scenes, chips, normalization, plan.lut)
        return chip_loader(dataset, cfg.train.batch_size, num_workers=cfg.data.num_workers,
                           pin_memory=self.device.type == "cuda")

    def run(self) -> RunResult:
        """Train, evaluate and save every step not finished yet."""
        cfg = self.config
        if self.normalization is None:
            self.prepare()
        normalization = self.normalization
        assert normalization is not None
        meta = self._task_meta(normalization)
        if self.writes and self.resume is None:
            write_text(self.folder.config, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            write_json(self.folder.task, meta)
        augmentation = TrainAugmentation(
            cfg.augment,
            rgb_bands=self.dataset.rgb_bands,
        )
        self.report = {
            "geoidec_version": __version__,
            "dataset": self.dataset.name,
            "method": self.method.name,
            "task": self.schedule.spec,
            "seed": cfg.train.seed,
            "eval_split": cfg.eval.split,
            "label": self.label,
            "steps": [],
        }
        plans = self.plans()
        previous, history, done = self._restore_finished(plans)
        for plan in plans[done:]:
            if plan.step == 0 and self.step0_from is not None:
                previous = self._reuse_step0(plan, normalization, meta, history)
                continue
            previous = self._train_step(plan, previous, normalization, augmentation, meta,
                                        history)
        barrier()
        return RunResult(self.run_dir, self.report, primary=self.launch.is_main)

    def _restore_finished(self, plans: list[StepPlan]
                          ) -> tuple[SegmentationModel | None, list[dict[str, Any]], int]:
        """The model, IoU history and count of the steps a resumed run already finished."""
        if self.resume is None:
            return self._initial_model(), [], 0
        finished = self.resume.finished(plans)
        entries = [self.resume.entries[p.step] for p in finished]
        self.report["steps"] = list(entries)
        history = [e["per_class_iou"] for e in entries]
        if len(finished) == len(plans):
            self.echo(f"{self.run_dir}: every step is already finished")
        elif finished:
            self.echo(f"resuming {self.run_dir}: step(s) {[p.step for p in finished]} are "
                      f"finished; continuing with step {plans[len(finished)].step}")
        else:
            self.echo(f"resuming {self.run_dir} at step {plans[0].step}")
        previous = self._initial_model()
        if finished:
            previous = load_checkpoint(self.run_dir, finished[-1].step).model.eval()
        return previous, history, len(finished)

    def _train_step(self, plan: StepPlan, previous: SegmentationModel | None,
                    normalization: Normalization, augmentation: TrainAugmentation,
                    meta: dict[str, Any], history: list[dict[str, Any]]) -> SegmentationModel:
        """Train one step (continuing its partial checkpoint when resuming), evaluate it and
        save its checkpoint and report entry; returns the trained model."""
        cfg = self.config
        L.seed_everything(cfg.train.seed + plan.step, workers=True, verbose=False)
        model = self._build_model(plan, previous, normalization.bands)
        keep = self._step_scenes(plan, self.grids)
        iterations = _iterations(cfg, plan, len(keep), self.chips_per_iteration)
        names = [c.name for c in self.classes_for(model.num_classes)]
        where = str(self.device)
        if self.launch.distributed:
            where = f"{self.launch.world_size} {self.launch.accelerator} processes (DDP)"
        self.echo(f"step {plan.step}: learning {[names[c] for c in plan.step_classes]} "
                  f"for {iterations} iterations on {where}")
        loader = self._loader(plan, self.grids, normalization, iterations, keep)
        module = StepModule(model, self.method, plan, normalization, augmentation,
                            cfg.train, iterations, old_model=previous)
        partial = self.folder.partial_checkpoint(plan.step)
        sampler = loader.sampler
        assert isinstance(sampler, ChipSampler)
        callbacks = [StepOutcome(self.method),
                     PartialCheckpoint(partial, cfg.train.checkpoint_every, plan.step, sampler,
                                       self.method)]
        resume_from = partial if self.resume is not None and partial.is_file() else None
        if resume_from is not None:
            self.echo(f"step {plan.step}: continuing from {partial.name}")
        started = time.perf_counter()
        quiet_lightning()
        trainer = build_trainer(cfg, self.launch, self.device, self.run_dir, plan.step,
                                iterations, callbacks)
        fit = fit_step(trainer, module, loader, plan.step, iterations, resume_from)
        train_seconds = time.perf_counter() - started
        if self.launch.kind == "spawn":  # the method ran in the workers: take rank 0's state
            self.method.start_step(plan, previous.num_classes if previous is not None else 0)
            restore_method(self.method, fit.method_state)
        self._check_ranks(plan, fit.digests)
        entry = self._evaluate_step(plan, model, normalization, names, history)
        entry["train"] = {"iterations": iterations, "batch_size": cfg.train.batch_size,
                          "seconds": round(train_seconds, 2), "accumulate": cfg.train.accumulate,
                          "processes": self.launch.world_size}
        if fit.resumed_at is not None:
            entry["train"]["resumed_at"] = fit.resumed_at
        stats = self.method.step_stats()
        if stats:
            entry["method_stats"] = self._name_stats(stats, names)
        history.append(entry["per_class_iou"])
        self._save_step(plan, model, meta, names, entry)
        return model.eval()

    def _check_ranks(self, plan: StepPlan, digests: list[str]) -> None:
        """Record every process's weight digest (logs/step_T/ranks.json); they must agree."""
        if len(digests) < 2 or not self.writes:
            return
        write_json(self.folder.logs / f"step_{plan.step}" / "ranks.json",
                   {"step": plan.step, "digests": digests})
        if len(set(digests)) != 1:
            self.echo(f"warning: step {plan.step}: the DDP processes ended with different "
                      "weights; the checkpoint holds rank 0's")

    def _evaluate_step(self, plan: StepPlan, model: SegmentationModel,
                       normalization: Normalization, names: list[str],
                       history: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        self.echo(f"step {plan.step}: evaluating on {len(self.eval_scenes)} "
                  f"{cfg.eval.split} scene(s)")
        started = time.perf_counter()
        with window_bar(f"step {plan.step}: evaluating", self.shows_progress) as progress:
            matrix = evaluate_scenes_sharded(
                model, self.eval_scenes, self.dataset.decoder, normalization,
                self.schedule.eval_lut(plan.step), tile=self.eval_tile,
                overlap=cfg.eval.overlap, batch_size=cfg.eval.batch_size, device=self.device,
                amp=mixed_precision(self.device, cfg.train.precision), progress=progress)
        old, summary = step_summary(matrix, names, plan, self.dataset.eval_background)
        self._last_cm = matrix
        return {
            "step": plan.step,
            "old_classes": [names[c] for c in old],
            "new_classes": [names[c] for c in plan.new_classes],
            "step_classes": [names[c] for c in plan.step_classes],
            **summary,
            "forgetting": forgetting(history, summary["per_class_iou"]) if history else {},
            "eval": {"split": cfg.eval.split, "scenes": len(self.eval_scenes),
                     "seconds": round(time.perf_counter() - started, 2)},
        }

    def _reuse_step0(self, plan: StepPlan, normalization: Normalization, meta: dict[str, Any],
                     history: list[dict[str, Any]]) -> SegmentationModel:
        """Take step 0 (model and report entry) from another run of the same set-up."""
        from geoidec.checkpoint import load_checkpoint
        from geoidec.runs.compare import load_report

        source = Path(self.step0_from)  # type: ignore[arg-type]
        ckpt = load_checkpoint(source, 0)
        theirs = TaskSchedule.from_dict(ckpt.meta["task"])
        mine_arch = {k: v for k, v in ckpt.model.config.items() if k != "classes_per_step"}
        wanted = dataclasses.asdict(self.config.model)
        problems = []
        if theirs.steps[0] != self.schedule.steps[0]:
            problems.append("its step 0 learnt other classes")
        if ckpt.normalization != normalization:
            problems.append("its normalisation statistics differ (other training data?)")
        defaults = {"first_stride": 2, "head": "aspp"}  # checkpoints older than these keys
        if any(mine_arch.get(k, defaults.get(k)) != wanted[k] for k in (
                "backbone", "aspp_channels", "output_stride", "first_stride", "head")):
            problems.append("its model architecture differs")
        if problems:
            raise DataError(f"cannot reuse step 0 of {source}: " + "; ".join(problems))
        entry = dict(load_report(source)["steps"][0])
        entry["reused_from"] = str(source)
        self.echo(f"step 0: reusing the model of {source}")
        names = [c.name for c in ckpt.classes]
        history.append(entry["per_class_iou"])
        self._last_cm = RunFolder(source).read_confusion(0)[1].astype(np.int64)
        self._save_step(plan, ckpt.model, meta, names, entry)
        return ckpt.model.eval()

    def _write_figures(self) -> None:
        """Plots and model card after every step; a plotting failure never stops a run."""
        from geoidec.runs.figures import write_run_figures
        from geoidec.runs.model_card import write_model_card

        try:
            write_run_figures(self.run_dir)
            write_model_card(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - figures are a convenience
            log.warning("could not write figures or the model card: %s", exc)

    @staticmethod
    def _name_stats(stats: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Per-class statistics keyed by model index ({1: n, ...}) -> {class name: value}."""
        return {key: {names[int(i)]: v for i, v in value.items()}
                if isinstance(value, dict) else value for key, value in stats.items()}

    def _save_step(self, plan: StepPlan, model: SegmentationModel, meta: dict[str, Any],
                   names: list[str], entry: dict[str, Any]) -> None:
        """Checkpoint, metrics, report and figures of a finished step (rank 0 only); the
        step's partial checkpoint is removed last."""
        entry["checkpoint"] = (self.folder.checkpoint(plan.step)
                               .relative_to(self.run_dir).as_posix())
        self.report["steps"].append(entry)
        if self.writes:
            self._write_step(plan, model, meta, names, entry)
        self.echo(f"step {plan.step}: mIoU old {_pct(entry['miou_old'])}, new "
                  f"{_pct(entry['miou_new'])}, all {_pct(entry['miou_all'])}")

    def _write_step(self, plan: StepPlan, model: SegmentationModel, meta: dict[str, Any],
                    names: list[str], entry: dict[str, Any]) -> None:
        classes = self.classes_for(model.num_classes)
        ckpt_meta = {
            **meta,
            "step": plan.step,
            "step_classes": entry["step_classes"],
            "classes": [{"index": i, "name": c.name, "color": list(c.color), "code": c.code}
                        for i, c in enumerate(classes)],
            "nodata_code": self.dataset.nodata_code,
            "config": self.config.to_dict(),
        }
        run = self.folder
        save_checkpoint(run.checkpoint(plan.step), model, ckpt_meta)
        write_text(run.step_metrics(plan.step), step_csv(entry))
        write_text(run.confusion_csv(plan.step), confusion_csv(self._last_cm, names))
        if "pseudo_labels" in entry.get("method_stats", {}):
            write_text(run.step_metrics(plan.step, "pseudo_labels"),
                       pseudo_label_csv(entry["method_stats"]))
        write_json(run.report, self.report)
        write_text(run.report_md, report_markdown(self.report))
        if self.config.train.logger == "tensorboard":
            log_evaluation(run.logs / "evaluation", entry)
        self._write_figures()
        run.partial_checkpoint(plan.step).unlink(missing_ok=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _first_profile(path: Path) -> dict[str, Any]:
    with open_raster(path) as src:
        return {"res": list(src.res), "crs": src.crs.to_string() if src.crs else None,
                "dtype": src.dtypes[0]}


def train_run(
    dataset: DatasetSpec,
    steps: str,
    config: Config,
    out: Path,
    *,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    label: str | None = None,
    step0_from: Path | None = None,
    resume: Path | None = None,
) -> RunResult:
    """Parse the schedule, read and check every input, prepare the run folder and run every
    step.

    ``label`` names the run in comparison tables (default: the method's name), e.g.
    ``idec-no-arcl`` for an ablation. ``step0_from`` reuses step 0 of another run with the
    same data, classes and architecture (methods differ only from step 1 on). ``resume``
    continues the interrupted run in that folder (``out`` is ignored): the same dataset,
    steps, method and settings are required.
    """
    schedule = TaskSchedule.parse(steps, dataset.class_names)
    state = resume_state(resume, overwrite)
    if state is not None:
        state.check(dataset, schedule, config)
        assert resume is not None  # resume_state() returns None without --resume
        out = Path(resume)
        label = label or (state.report or {}).get("label")
    # check every setting and read every input before touching the run folder (an
    # --overwrite of a good run with a bad setting or input must not delete it)
    run = IncrementalRun(dataset, schedule, config, Path(out), echo, label, step0_from, state)
    return start(run, Path(out), overwrite)


def resume_state(resume: Path | None, overwrite: bool) -> ResumeState | None:
    """The interrupted run ``--resume`` continues (None without it)."""
    if resume is None:
        return None
    if overwrite:
        raise UsageError("--resume continues a run; it cannot be combined with --overwrite")
    return ResumeState.load(resume)


def start(run: IncrementalRun, out: Path, overwrite: bool) -> RunResult:
    """Read and check every input of ``run``, then create its folder (rank 0; an existing
    one only with ``overwrite``, unless resuming) and run it."""
    state = run.resume
    if state is None:
        prepare_run_dir(out, overwrite, create=False)
    init_process_group(run.launch)
    run.prepare()
    if state is None:
        barrier()  # every process has checked the folder before rank 0 creates it
        # only rank 0 touches it now: another rank checking again could see rank 0's
        # write probe and take the new folder for a non-empty old one
        run.run_dir = prepare_run_dir(out, overwrite) if run.writes else Path(out)
        barrier()
    return run.run()


__all__ = ["IncrementalRun", "RunResult", "prepare_run_dir", "resume_state",
           "start", "train_run"]
