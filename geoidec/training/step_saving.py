"""Saving a finished step through :class:`~geoidec.run_folder.RunFolder` (rank 0 only): its
checkpoint, per-class metrics and confusion matrix, the run's report (JSON and Markdown),
figures and model card; the step's partial checkpoint is removed last."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from geoidec.checkpoint import save_checkpoint
from geoidec.files import write_json, write_text
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel
from geoidec.runs.reports import (
    confusion_csv,
    log_evaluation,
    pseudo_label_csv,
    report_markdown,
    step_csv,
)
from geoidec.training.run_inputs import RunInputs

log = logging.getLogger("geoidec")


class StepSaving(RunInputs):
    """Writes a finished step's files and keeps the run's report."""

    #: Confusion matrix of the step evaluated last (set by ``_evaluate_step``).
    _last_cm: np.ndarray

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

    def _write_figures(self) -> None:
        """Plots and model card after every step; a plotting failure never stops a run."""
        from geoidec.runs.figures import write_run_figures
        from geoidec.runs.model_card import write_model_card

        try:
            write_run_figures(self.run_dir)
            write_model_card(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - figures are a convenience
            log.warning("could not write figures or the model card: %s", exc)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


__all__ = ["StepSaving"]
