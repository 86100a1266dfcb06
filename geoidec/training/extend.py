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

The parent is read by :mod:`.parent`, the classes matched by :mod:`.class_match`, and the new
images checked against the model's by :mod:`.guard_rails`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from geoidec.config import Config
from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.classes import ClassInfo
from geoidec.data.normalization import Normalization
from geoidec.errors import UsageError
from geoidec.evaluation.by_name import evaluate_by_name, summary_by_name
from geoidec.evaluation.evaluate import step_scorer
from geoidec.evaluation.summary import forgetting
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel
from geoidec.training.class_match import match_classes, step_plan
from geoidec.training.guard_rails import check_inputs
from geoidec.training.parent import Parent, load_parent
from geoidec.training.resume import ResumeState
from geoidec.training.run import IncrementalRun, RunResult
from geoidec.training.start import resume_state, start


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

        evaluate = step_scorer(model, normalization, step=plan.step, tile=self.eval_tile,
                               overlap=cfg.eval.overlap, config=cfg, device=self.device,
                               progress=self.shows_progress)
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
                     "scenes": sum(r["scenes"] for r in primary), "tta": cfg.eval.tta,
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


__all__ = ["ExtendRun", "extend_run"]
