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

Every input is read (normalisation, label index, checks: :mod:`.run_inputs`) before the first
file is written, so a bad input leaves no run folder behind; :mod:`.start` prepares the folder
and starts the run. A step is set up by :mod:`.step_setup`, saved by :mod:`.step_saving`, or
taken from another run by :mod:`.step0_reuse`. With several processes (:mod:`.distributed`)
only rank 0 writes; ``--resume`` (:mod:`.resume`) continues an interrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from geoidec import __version__
from geoidec.checkpoint import load_checkpoint
from geoidec.data.normalization import Normalization
from geoidec.data.transforms import TrainAugmentation
from geoidec.devices import barrier
from geoidec.evaluation.evaluate import step_scorer, step_summary
from geoidec.evaluation.summary import forgetting
from geoidec.files import write_json, write_text
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel
from geoidec.training.loader import ChipSampler
from geoidec.training.module import StepModule
from geoidec.training.resume import PartialCheckpoint
from geoidec.training.step0_reuse import Step0Reuse
from geoidec.training.step_setup import StepSetup, step_iterations
from geoidec.training.step_state import StepOutcome, restore_method
from geoidec.training.trainer import build_trainer, fit_step, quiet_lightning


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]
    #: False in the other processes of a DDP launch (they print nothing).
    primary: bool = True


class IncrementalRun(Step0Reuse, StepSetup):
    """Trains and evaluates every step of a schedule with one method.

    ``resume`` (a run folder read by :class:`ResumeState`) skips its finished steps and
    continues the interrupted one from its partial checkpoint.
    """

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
        iterations = step_iterations(cfg, plan, len(keep), self.chips_per_iteration)
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
        score = step_scorer(model, normalization, step=plan.step, tile=self.eval_tile,
                            overlap=cfg.eval.overlap, config=cfg, device=self.device,
                            progress=self.shows_progress)
        matrix = score(self.eval_scenes, self.dataset.decoder, self.schedule.eval_lut(plan.step))
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
                     "tta": cfg.eval.tta, "seconds": round(time.perf_counter() - started, 2)},
        }

    @staticmethod
    def _name_stats(stats: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Per-class statistics keyed by model index ({1: n, ...}) -> {class name: value}."""
        return {key: {names[int(i)]: v for i, v in value.items()}
                if isinstance(value, dict) else value for key, value in stats.items()}


__all__ = ["IncrementalRun", "RunResult"]
