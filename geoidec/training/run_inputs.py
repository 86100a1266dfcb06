"""What an incremental run is made of, and the reading of its inputs before anything is
written: :class:`RunInputs` holds the dataset, schedule, method, device and launch, reads the
normalisation statistics, the class index of every training label and the checks of
:mod:`.preflight` (:meth:`RunInputs.prepare`), and has the hooks a run from a parent model
(:class:`~geoidec.training.extend.ExtendRun`) overrides: ``plans``, ``classes_for``,
``_initial_model``, ``_statistics``, ``_evaluation_scenes``, ``_task_meta`` and
``_unlisted_message``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geoidec import __version__
from geoidec.config import Config
from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.class_grid import build_class_grid
from geoidec.data.classes import ClassInfo
from geoidec.data.normalization import Normalization, compute_normalization, with_fill
from geoidec.data.scene_reader import open_raster
from geoidec.devices import resolve_device
from geoidec.errors import DataError
from geoidec.methods import Method, StepPlan, build_method
from geoidec.models import SegmentationModel
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule
from geoidec.training.distributed import Launch, detect_launch, main_only
from geoidec.training.preflight import (
    nodata_messages,
    reading,
    unlisted_label_values,
    unlisted_values_message,
)
from geoidec.training.resume import ResumeState


def check_logger(logger: str) -> None:
    """One line, before anything is read, when ``train.logger`` needs a missing package."""
    import importlib.util

    if logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise DataError("train.logger=tensorboard needs TensorBoard: pip install "
                        "'geoidec[tensorboard]' (or --set train.logger=csv)")


def model_classes(dataset: DatasetSpec, schedule: TaskSchedule, count: int) -> list[ClassInfo]:
    """Classes in model index order (background first), for ``count`` outputs."""
    by_name = {c.name: c for c in dataset.classes}
    names = schedule.model_class_names()[: count - 1]
    return [dataset.background] + [by_name[n] for n in names]


class RunInputs:
    """The dataset, schedule, settings, method, device and launch of a run, its scenes, and
    what :meth:`prepare` reads from them (normalisation, class grids).

    ``resume`` (a run folder read by :class:`ResumeState`) keeps that run's normalisation.
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
        """What RUN/task.json and every checkpoint record of the run's task and inputs."""
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


def _first_profile(path: Path) -> dict[str, Any]:
    with open_raster(path) as src:
        return {"res": list(src.res), "crs": src.crs.to_string() if src.crs else None,
                "dtype": src.dtypes[0]}


__all__ = ["RunInputs", "check_logger", "model_classes"]
