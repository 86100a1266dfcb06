"""The run folder: every path of a run and how each of its files is read, in one place.

::

    RUN/config.yaml                         resolved configuration
    RUN/task.json                           dataset, classes, schedule, method, normalisation
    RUN/checkpoints/step_T.pt               one self-sufficient checkpoint per step
    RUN/checkpoints/step_T.partial.ckpt     the step in progress (``--resume``)
    RUN/metrics/step_T.csv                  per-class scores of step T
    RUN/metrics/step_T_confusion.csv        its confusion matrix
    RUN/metrics/step_T_pseudo_labels.csv    pseudo-label statistics (methods that make them)
    RUN/steps/step_T_scenes.txt             the training scenes step T used
    RUN/report.json, RUN/report.md          every step's scores
    RUN/figures/                            plots of the report
    RUN/model_card.md                       what the model is and how it was made
    RUN/logs/step_T/                        training logs (CSV, TensorBoard), ranks.json
    RUN/logs/evaluation/                    evaluation logs (MLflow, TensorBoard)

It sits low in the package (beside ``files``) because checkpoint loading, training, the
reports and the command line all find files through it. Readers raise
:class:`~geoidec.errors.DataError` with one line that says what is wrong.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geoidec.errors import DataError

__all__ = ["RunFolder", "read_confusion_csv"]


@dataclass(frozen=True)
class RunFolder:
    """Paths and readers of one run folder (``RunFolder(path)``; nothing is read until asked)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ------------------------------------------------------------------------- paths
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def task(self) -> Path:
        return self.path / "task.json"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def model_card(self) -> Path:
        return self.path / "model_card.md"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def steps_dir(self) -> Path:
        return self.path / "steps"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def checkpoint(self, step: int) -> Path:
        """``checkpoints/step_T.pt``."""
        return self.checkpoints / f"step_{step}.pt"

    def partial_checkpoint(self, step: int) -> Path:
        """``checkpoints/step_T.partial.ckpt``: the step in progress."""
        return self.checkpoints / f"step_{step}.partial.ckpt"

    def step_metrics(self, step: int, kind: str = "") -> Path:
        """``metrics/step_T.csv``, or ``metrics/step_T_KIND.csv`` (``confusion``,
        ``pseudo_labels``)."""
        return self.metrics / (f"step_{step}_{kind}.csv" if kind else f"step_{step}.csv")

    def confusion_csv(self, step: int) -> Path:
        """``metrics/step_T_confusion.csv``."""
        return self.step_metrics(step, "confusion")

    def figure(self, name: str) -> Path:
        """``figures/NAME``."""
        return self.figures / name

    def scene_list(self, step: int) -> Path:
        """``steps/step_T_scenes.txt``."""
        return self.steps_dir / f"step_{step}_scenes.txt"

    @staticmethod
    def of_checkpoint(file: Path) -> RunFolder:
        """The run folder a ``step_T.pt`` belongs to (its folder when it is not in one's
        ``checkpoints/``)."""
        file = Path(file)
        parent = file.parent
        return RunFolder(parent.parent if parent.name == "checkpoints" else parent)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the run folder (POSIX), or as given when outside it."""
        try:
            return Path(path).relative_to(self.path).as_posix()
        except ValueError:
            return str(path)

    # ------------------------------------------------------------------------- what is there
    def saved_steps(self) -> list[int]:
        """Steps with a saved checkpoint, in order."""
        steps = []
        for file in self.checkpoints.glob("step_*.pt"):
            try:
                steps.append(int(file.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(steps)

    def has_checkpoints(self) -> bool:
        return bool(self.saved_steps())

    def is_finished_run(self) -> bool:
        """A report and at least one checkpoint."""
        return self.report.is_file() and self.has_checkpoints()

    # ------------------------------------------------------------------------- readers
    def read_task(self, purpose: str = "") -> dict[str, Any]:
        """``task.json``; ``purpose`` (e.g. ``"cannot resume"``) starts the error message."""
        if not self.task.is_file():
            lead = f"{purpose} {self.path}: not" if purpose else f"{self.path} is not"
            raise DataError(f"{lead} a geoidec run folder (no task.json)")
        return _json_object(self.task)

    def read_task_or_empty(self) -> dict[str, Any]:
        """``task.json``, or ``{}`` when absent or unreadable (callers fall back to defaults)."""
        try:
            return _json_object(self.task)
        except DataError:
            return {}

    def read_report(self) -> dict[str, Any]:
        """``report.json`` with its ``steps`` list."""
        if not self.report.is_file():
            raise DataError(f"no report.json in {self.path}; is it a finished geoidec run?")
        report = _json_object(self.report)
        if not isinstance(report.get("steps"), list):
            raise DataError(f"{self.report} is not a geoidec report (no 'steps' list)")
        return report

    def read_report_if_any(self) -> dict[str, Any] | None:
        """``report.json``, or None before the first step finished."""
        return _json_object(self.report) if self.report.is_file() else None

    def read_config_or_empty(self) -> dict[str, Any]:
        """``config.yaml`` as a plain mapping, or ``{}`` when absent or unreadable."""
        try:
            data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    def read_confusion(self, step: int) -> tuple[list[str], np.ndarray]:
        """Class names and the (truth, prediction) counts of step ``step``."""
        return read_confusion_csv(self.confusion_csv(step))

    def read_scene_lists(self) -> dict[int, list[str]]:
        """The training scenes of each step (``steps/step_T_scenes.txt``), by step."""
        found: dict[int, list[str]] = {}
        for path in self.steps_dir.glob("step_*_scenes.txt"):
            try:
                step = int(path.name.split("_")[1])
            except (IndexError, ValueError):
                continue
            found[step] = [line.strip() for line in
                           path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return dict(sorted(found.items()))


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc.__class__.__name__}); the run folder is "
                        "damaged") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a geoidec run file (a JSON object expected)")
    return data


def read_confusion_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """A ``metrics/step_T_confusion.csv``: class names and the (truth, prediction) counts."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.__class__.__name__})") from None
    if len(rows) < 2:
        raise DataError(f"{path} holds no confusion matrix")
    names = rows[0][1:]
    try:
        matrix = np.array([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    except ValueError:
        raise DataError(f"{path} holds a value that is not a number") from None
    if matrix.shape != (len(names), len(names)):
        raise DataError(f"{path} is not a square confusion matrix with class names")
    return names, matrix
