"""A whole incremental run: step after step, train, evaluate, checkpoint, report.

Run folder::

    RUN/config.yaml            resolved configuration
    RUN/task.json              dataset, classes, schedule, method, normalisation
    RUN/checkpoints/step_T.pt  one self-sufficient checkpoint per step
    RUN/metrics/step_T.csv     per-class IoU/F1 of step T
    RUN/metrics/step_T_confusion.csv
    RUN/logs/step_T/metrics.csv  per-iteration loss terms (Lightning CSVLogger)
    RUN/report.json, RUN/report.md
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import shutil
import time
import warnings
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
from geoidec.config import Config
from geoidec.data.base import ClassInfo, DataError, DatasetSpec
from geoidec.data.chips import ChipDataset, build_class_grid, plan_chips
from geoidec.data.normalization import Normalization, compute_normalization
from geoidec.data.transforms import AugmentationSettings, TrainAugmentation
from geoidec.engine.checkpoint import save_checkpoint, write_json, write_text
from geoidec.engine.evaluate import evaluate_scenes
from geoidec.engine.metrics import forgetting, summarize
from geoidec.engine.module import StepModule
from geoidec.engine.reports import (
    confusion_csv,
    pseudo_label_csv,
    report_markdown,
    step_csv,
)
from geoidec.methods import Method, StepPlan, build_method
from geoidec.models import SegmentationModel, build_model
from geoidec.tasks import TaskSchedule

log = logging.getLogger("geoidec")


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]


def quiet_lightning() -> None:
    """Keep Lightning's banners and tips out of the user's terminal (warnings stay)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*sync_dist.*", ".*LeafSpec.*",
                    ".*module\\(s\\) in eval mode.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", pattern)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; a clear error for unavailable CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {name} asked for CUDA but no GPU is available; use cpu")
    return device


def _precision(cfg: Config, device: torch.device) -> str:
    if cfg.train.precision == "auto":
        return "16-mixed" if device.type == "cuda" else "32-true"
    return {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(
        cfg.train.precision, cfg.train.precision
    )


def prepare_run_dir(out: Path, overwrite: bool) -> Path:
    """Create the run folder; refuse to reuse a non-empty one without ``overwrite``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"run folder {out} exists and is not empty; pass --overwrite or "
                            "choose another --out")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise DataError(f"cannot create run folder {out}: permission denied") from None
    return out


def model_classes(dataset: DatasetSpec, schedule: TaskSchedule, count: int) -> list[ClassInfo]:
    """Classes in model index order (background first), for ``count`` outputs."""
    by_name = {c.name: c for c in dataset.classes}
    names = schedule.model_class_names()[: count - 1]
    return [dataset.background] + [by_name[n] for n in names]


def _iterations(cfg: Config, plan: StepPlan, n_scenes: int) -> int:
    if cfg.train.epochs:
        chips = cfg.train.chips_per_scene * n_scenes
        return max(1, math.ceil(cfg.train.epochs * chips / cfg.train.batch_size))
    incremental = cfg.train.iterations_incremental
    if incremental is None:
        incremental = cfg.train.iterations
    if plan.incremental:
        return incremental
    return cfg.train.iterations + plan.extra_budget_steps * incremental


class IncrementalRun:
    """Trains and evaluates every step of a schedule with one method."""

    def __init__(
        self,
        dataset: DatasetSpec,
        schedule: TaskSchedule,
        config: Config,
        run_dir: Path,
        echo: Callable[[str], None] = print,
        label: str | None = None,
        step0_from: Path | None = None,
    ) -> None:
        self.label = label or config.method.name
        self.step0_from = step0_from
        self.dataset = dataset
        self.schedule = schedule
        self.config = config
        self.run_dir = run_dir
        self.echo = echo
        self.method: Method = build_method(config.method)
        self.device = resolve_device(config.train.device)
        self.train_scenes = dataset.scenes("train")
        if config.data.train_on_val:
            self.train_scenes += tuple(dataset.splits.get("val", ()))
        self.eval_scenes = dataset.scenes(config.eval.split)
        self.tile = config.data.tile_size
        self.eval_tile = config.eval.tile_size or self.tile
        if not 0 <= config.eval.overlap < self.eval_tile:
            raise DataError(f"eval.overlap must be in [0, {self.eval_tile}), got "
                            f"{config.eval.overlap}")
        self.report: dict[str, Any] = {}

    # ----------------------------------------------------------------- setup
    def _normalization(self) -> Normalization:
        self.echo(f"computing normalisation statistics from {len(self.train_scenes)} "
                  "training scene(s)")
        return compute_normalization(self.train_scenes, self.config.data.stats_pixels)

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
                               weights=m.weights)
        model = copy.deepcopy(previous)
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
        names = "\n".join(self.train_scenes[i].name for i in keep)
        write_text(self.run_dir / "steps" / f"step_{plan.step}_scenes.txt", names + "\n")
        return keep

    def _loader(self, plan: StepPlan, grids: list, normalization: Normalization,
                iterations: int, keep: list[int]) -> DataLoader:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + plan.step)
        chips = plan_chips(
            [grids[i] for i in keep], plan.chip_classes, iterations * cfg.train.batch_size,
            self.tile, generator, min_class_fraction=cfg.data.min_class_fraction,
            min_valid_fraction=cfg.data.min_valid_fraction,
        )
        chips = [(keep[s], window) for s, window in chips]
        dataset = ChipDataset(self.dataset, self.train_scenes, chips, normalization, plan.lut)
        return DataLoader(
            dataset, batch_size=cfg.train.batch_size, shuffle=False, drop_last=True,
            num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _trainer(self, plan: StepPlan, iterations: int) -> L.Trainer:
        from lightning.pytorch.callbacks import RichProgressBar
        from lightning.pytorch.loggers import CSVLogger

        cfg = self.config.train
        accelerator = "gpu" if self.device.type == "cuda" else "cpu"
        devices: Any = [self.device.index or 0] if accelerator == "gpu" else 1
        if accelerator == "gpu" and cfg.devices > 1:
            devices = cfg.devices
        callbacks = [RichProgressBar(leave=True)] if cfg.progress else []
        return L.Trainer(
            accelerator=accelerator,
            devices=devices,
            precision=_precision(self.config, self.device),  # type: ignore[arg-type]
            max_steps=iterations,
            gradient_clip_val=cfg.grad_clip,
            max_epochs=1,  # the chip plan holds exactly `iterations` batches
            logger=CSVLogger(self.run_dir / "logs", name=f"step_{plan.step}", version=""),
            log_every_n_steps=max(1, min(10, iterations // 5)),
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=cfg.progress,
            num_sanity_val_steps=0,
            callbacks=callbacks,
            default_root_dir=str(self.run_dir),
        )

    def run(self) -> RunResult:
        cfg = self.config
        normalization = self._normalization()
        meta = self._task_meta(normalization)
        write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        write_json(self.run_dir / "task.json", meta)
        n_classes = len(self.dataset.classes) + 1
        self.echo("indexing label content of the training scenes")
        grids = [build_class_grid(s, self.dataset.decoder, n_classes) for s in self.train_scenes]
        augmentation = TrainAugmentation(
            AugmentationSettings(**dataclasses.asdict(cfg.augment)),
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
        previous: SegmentationModel | None = None
        history: list[dict[str, Any]] = []
        for plan in self.method.plan(self.schedule):
            if plan.step == 0 and self.step0_from is not None:
                previous = self._reuse_step0(plan, normalization, meta, history)
                continue
            L.seed_everything(cfg.train.seed + plan.step, workers=True, verbose=False)
            model = self._build_model(plan, previous, normalization.bands)
            keep = self._step_scenes(plan, grids)
            iterations = _iterations(cfg, plan, len(keep))
            names = [c.name for c in model_classes(self.dataset, self.schedule,
                                                   model.num_classes)]
            self.echo(f"step {plan.step}: learning {[names[c] for c in plan.step_classes]} "
                      f"for {iterations} iterations on {self.device}")
            loader = self._loader(plan, grids, normalization, iterations, keep)
            module = StepModule(model, self.method, plan, normalization, augmentation,
                                cfg.train, iterations, old_model=previous)
            started = time.perf_counter()
            quiet_lightning()
            self._trainer(plan, iterations).fit(module, loader)
            train_seconds = time.perf_counter() - started
            entry = self._evaluate_step(plan, model, normalization, names, history)
            entry["train"] = {"iterations": iterations, "batch_size": cfg.train.batch_size,
                              "seconds": round(train_seconds, 2)}
            stats = self.method.step_stats()
            if stats:
                entry["method_stats"] = self._name_stats(stats, names)
            history.append(entry["per_class_iou"])
            self._save_step(plan, model, meta, names, entry)
            previous = model.eval()
        return RunResult(self.run_dir, self.report)

    def _evaluate_step(self, plan: StepPlan, model: SegmentationModel,
                       normalization: Normalization, names: list[str],
                       history: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        self.echo(f"step {plan.step}: evaluating on {len(self.eval_scenes)} "
                  f"{cfg.eval.split} scene(s)")
        started = time.perf_counter()
        cm = evaluate_scenes(
            model, self.eval_scenes, self.dataset.decoder, normalization,
            self.schedule.eval_lut(plan.step), tile=self.eval_tile, overlap=cfg.eval.overlap,
            batch_size=cfg.eval.batch_size, device=self.device,
            amp=self.device.type == "cuda" and cfg.train.precision == "auto",
        )
        old = tuple(plan.old_classes)
        if self.dataset.eval_background:
            old = (0, *old)
        summary = summarize(cm.matrix, class_names=names, old=old, new=plan.new_classes,
                            include_background=self.dataset.eval_background,
                            background_name=names[0])
        self._last_cm = cm.matrix
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
        from geoidec.engine.checkpoint import load_checkpoint
        from geoidec.engine.compare import load_report

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
        if any(mine_arch.get(k) != wanted[k] for k in ("backbone", "aspp_channels",
                                                       "output_stride")):
            problems.append("its model architecture differs")
        if problems:
            raise DataError(f"cannot reuse step 0 of {source}: " + "; ".join(problems))
        entry = dict(load_report(source)["steps"][0])
        entry["reused_from"] = str(source)
        self.echo(f"step 0: reusing the model of {source}")
        names = [c.name for c in ckpt.classes]
        history.append(entry["per_class_iou"])
        self._last_cm = _read_confusion(source / "metrics" / "step_0_confusion.csv")
        self._save_step(plan, ckpt.model, meta, names, entry)
        return ckpt.model.eval()

    def _write_figures(self) -> None:
        """Plots and model card after every step; a plotting failure never stops a run."""
        from geoidec.engine.figures import write_run_figures
        from geoidec.engine.model_card import write_model_card

        try:
            write_run_figures(self.run_dir)
            write_model_card(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - figures are a convenience
            log.warning("could not write figures or the model card: %s", exc)

    @staticmethod
    def _name_stats(stats: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Per-old-class lists (model indices 1..) -> {class name: value}."""
        named = {}
        for key, value in stats.items():
            if isinstance(value, list) and key in ("pseudo_labels", "thresholds",
                                                   "entropy_thresholds"):
                value = dict(zip(names[1:], value, strict=False))
            named[key] = value
        return named

    def _save_step(self, plan: StepPlan, model: SegmentationModel, meta: dict[str, Any],
                   names: list[str], entry: dict[str, Any]) -> None:
        classes = model_classes(self.dataset, self.schedule, model.num_classes)
        ckpt_meta = {
            **meta,
            "step": plan.step,
            "step_classes": entry["step_classes"],
            "classes": [{"index": i, "name": c.name, "color": list(c.color)}
                        for i, c in enumerate(classes)],
            "config": self.config.to_dict(),
        }
        path = save_checkpoint(self.run_dir / "checkpoints" / f"step_{plan.step}.pt", model,
                               ckpt_meta)
        entry["checkpoint"] = os.path.relpath(path, self.run_dir)
        write_text(self.run_dir / "metrics" / f"step_{plan.step}.csv", step_csv(entry))
        write_text(self.run_dir / "metrics" / f"step_{plan.step}_confusion.csv",
                   confusion_csv(self._last_cm, names))
        if "pseudo_labels" in entry.get("method_stats", {}):
            write_text(self.run_dir / "metrics" / f"step_{plan.step}_pseudo_labels.csv",
                       pseudo_label_csv(entry["method_stats"]))
        self.report["steps"].append(entry)
        write_json(self.run_dir / "report.json", self.report)
        write_text(self.run_dir / "report.md", report_markdown(self.report))
        self._write_figures()
        self.echo(f"step {plan.step}: mIoU old {_pct(entry['miou_old'])}, new "
                  f"{_pct(entry['miou_new'])}, all {_pct(entry['miou_all'])}")


def _read_confusion(path: Path) -> np.ndarray:
    rows = path.read_text().strip().splitlines()[1:]
    return np.array([[int(v) for v in row.split(",")[1:]] for row in rows], dtype=np.int64)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _first_profile(path: Path) -> dict[str, Any]:
    from geoidec.data.base import open_raster

    with open_raster(path) as src:
        return {"res": list(src.res), "crs": src.crs.to_string() if src.crs else None}


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
) -> RunResult:
    """Parse the schedule, prepare the run folder and run every step.

    ``label`` names the run in comparison tables (default: the method's name), e.g.
    ``idec-no-arcl`` for an ablation. ``step0_from`` reuses step 0 of another run with the
    same data, classes and architecture (methods differ only from step 1 on).
    """
    schedule = TaskSchedule.parse(steps, dataset.class_names)
    # check every setting before touching the run folder (an --overwrite of a good run with a
    # bad setting must not delete it)
    run = IncrementalRun(dataset, schedule, config, Path(out), echo, label, step0_from)
    run.run_dir = prepare_run_dir(out, overwrite)
    return run.run()


__all__ = ["IncrementalRun", "RunResult", "train_run", "resolve_device"]
