"""What one step trains on and with: its model (a new one, or the previous step's grown by
the step's classes), the training scenes the protocol lets it use, its length in optimiser
steps, and its chip plan and DataLoader (deterministic under the seed)."""

from __future__ import annotations

import copy
import math

import torch
from torch.utils.data import DataLoader

from geoidec.config import Config
from geoidec.data.chip_plan import plan_chips
from geoidec.data.chips import ChipDataset
from geoidec.data.normalization import Normalization
from geoidec.errors import DataError
from geoidec.files import write_text
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel, build_model
from geoidec.training.loader import chip_loader
from geoidec.training.run_inputs import RunInputs


def step_iterations(cfg: Config, plan: StepPlan, n_scenes: int, chips_per_step: int) -> int:
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


class StepSetup(RunInputs):
    """The model, scenes and chip loader of a step of the run."""

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


__all__ = ["StepSetup", "step_iterations"]
