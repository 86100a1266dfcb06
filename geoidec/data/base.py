"""The dataset description shared by every reader: :class:`DatasetSpec` (classes, label
decoder, and per split a list of :class:`Scene`: an image raster plus an optional
co-registered label raster) and the preset settings shared by the image benchmarks.

Every dataset (ISPRS Potsdam/Vaihingen, a user's GeoTIFFs, ...) becomes a :class:`DatasetSpec`;
its scenes are read window by window with :class:`geoidec.data.scene_reader.SceneReader`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geoidec.constants import IGNORE_INDEX
from geoidec.data.classes import ClassInfo
from geoidec.data.decoders import LabelDecoder
from geoidec.errors import DataError


@dataclass(frozen=True)
class Scene:
    """One image raster (selected bands) and its optional label raster of the same grid."""

    name: str
    image: Path
    label: Path | None = None
    #: 1-based band indexes to read; None reads all bands.
    bands: tuple[int, ...] | None = None
    #: Per-band fill value, aligned with the bands read (None: the band has none); a pixel
    #: where any band holds its fill value is nodata. Empty: no fill values. Declared with
    #: ``fill_values`` in a dataset YAML, or detected with the normalisation statistics
    #: (:func:`geoidec.data.normalization.compute_normalization`).
    fill: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the engine needs to know about a dataset."""

    name: str
    classes: tuple[ClassInfo, ...]
    decoder: LabelDecoder
    splits: Mapping[str, tuple[Scene, ...]]
    background: ClassInfo = ClassInfo("background", (0, 0, 0))
    #: Whether background is an evaluated class (VOC) or ignored in evaluation (ISPRS, ADE).
    eval_background: bool = False
    #: Band names of the image (after band selection), for checkpoints and error messages.
    band_names: tuple[str, ...] = ()
    #: Indexes (0-based, after selection) of the red, green and blue bands, if any.
    rgb_bands: tuple[int, int, int] | None = (0, 1, 2)
    #: Extra metadata (resolution, source) kept in reports and checkpoints.
    meta: Mapping[str, object] = field(default_factory=dict)
    #: Dataset-specific settings per preset, applied under the user's flags and --set, e.g.
    #: ``{"paper": {"train.batch_size": 24, "train.epochs": 30}}``.
    preset_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: Nodata value of predicted class maps (a dataset YAML's ``nodata_code``; 255 otherwise).
    nodata_code: int = IGNORE_INDEX

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def scenes(self, split: str) -> tuple[Scene, ...]:
        """Scenes of a split; a clear error when the split is empty or unknown."""
        scenes = self.splits.get(split, ())
        if not scenes:
            have = ", ".join(f"{k} ({len(v)})" for k, v in self.splits.items() if v) or "none"
            raise DataError(f"dataset '{self.name}' has no '{split}' scenes; splits found: {have}")
        return scenes


def image_benchmark_presets(epochs: int) -> dict[str, dict[str, object]]:
    """Preset settings shared by the image benchmarks (VOC, ADE20K): the MiB/PLOP/IDEC set-up
    (crop 512, batch 24, ``epochs`` per step, one random crop per image and epoch, whole
    images through one 512 px window padded with ignore) and a small CPU smoke set-up."""
    return {
        "paper": {
            "train.batch_size": 24, "train.epochs": epochs, "train.chips_per_scene": 1,
            "data.tile_size": 512, "train.lr": 0.01, "train.lr_incremental": 0.001,
            "data.min_class_fraction": 0.0001, "data.min_valid_fraction": 0.1,
            "eval.overlap": 0,
        },
        "cpu": {
            "train.iterations": 200, "train.iterations_incremental": 100,
            "data.tile_size": 256, "data.min_class_fraction": 0.001,
            "data.min_valid_fraction": 0.1, "eval.overlap": 0,
        },
    }
