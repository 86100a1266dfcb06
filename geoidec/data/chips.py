"""Training chips as a torch Dataset: :class:`ChipDataset` reads the planned chips
(:func:`geoidec.data.chip_plan.plan_chips`), normalised, with targets in model-index space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import ReaderCache, SceneReader


class ChipDataset(Dataset):
    """Reads planned chips: image scaled to [0, 1] (C, H, W) float32 and the remapped target
    (H, W) int64 (model-index space through ``lut``; invalid pixels 255)."""

    def __init__(
        self,
        dataset: DatasetSpec,
        scenes: Sequence[Scene],
        chips: Sequence[tuple[int, Window]],
        normalization: Normalization,
        lut: np.ndarray,
    ) -> None:
        self.decoder = dataset.decoder
        self.scenes = list(scenes)
        self.chips = list(chips)
        self.normalization = normalization
        self.lut = lut
        self._readers = ReaderCache()

    def __len__(self) -> int:
        return len(self.chips)

    def _reader(self, index: int) -> SceneReader:
        return self._readers.get(index, self.scenes[index], self.decoder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, window = self.chips[i]
        image, label, valid = self._reader(s).read(window)
        unit = self.normalization.to_unit(image)
        unit[:, ~valid] = 0.0
        target = self.lut[label]
        return torch.from_numpy(np.ascontiguousarray(unit)), torch.from_numpy(
            target.astype(np.int64)
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = ReaderCache()
        return state
