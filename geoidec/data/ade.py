"""ADE20K (MIT Scene Parsing Benchmark, 150 classes), read through the same scene engine.

Layout (``root`` may be the ``ADEChallengeData2016`` folder or its parent)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg        (20,210 images)
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png
    ADEChallengeData2016/images/validation/ADE_val_00000001.jpg        (2,000 images)
    ADEChallengeData2016/annotations/validation/ADE_val_00000001.png

Annotation pixel values are the class indices: 0 "unlabelled" (background in training, not
evaluated: ``eval_background=False``, as in MiB, PLOP and IDEC), 1..150 the classes in the
official order of the benchmark's ``objectInfo150`` table (first name of each entry).

Splits: ``train`` = ``training`` minus every 20th sorted image id (the held-out ``val``,
1,010 images, for tuning); ``test`` = ``validation``, on which the literature reports.

Display colours: a generated palette (farthest-point picks from the 6-level RGB colour cube,
so any two classes differ by at least 51 in one channel; no near-black colours), not the
CSAIL toolkit's ``color150`` table; prediction rasters carry these colours and the names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.data.base import DatasetSpec, Scene, image_benchmark_presets
from geoidec.data.classes import ClassInfo
from geoidec.data.voc import HOLDOUT_EVERY, holdout
from geoidec.errors import DataError

#: The 150 ADE20K SceneParsing classes in the official order (label values 1..150).
CLASS_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

ADE_URL = "http://sceneparsing.csail.mit.edu/"
ZIP_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
LAYOUT = "ADEChallengeData2016/{images,annotations}/{training,validation}"


def palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` (<= 189) well-separated colours: farthest-point picks from the RGB cube with
    levels 0, 51, ..., 255 (near-black excluded: black is the background), deterministic."""
    levels = np.arange(0, 256, 51)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    cube = cube[cube.max(axis=1) >= 102]  # no near-black: black is the background
    if count > len(cube):
        raise ValueError(f"at most {len(cube)} palette colours, asked for {count}")
    chosen = [int(np.argmax(cube.sum(axis=1)))]  # start from white
    distance = np.linalg.norm(cube - cube[chosen[0]], axis=1)
    while len(chosen) < count:
        pick = int(np.argmax(distance))  # first maximum: deterministic
        chosen.append(pick)
        distance = np.minimum(distance, np.linalg.norm(cube - cube[pick], axis=1))
    return [tuple(int(v) for v in cube[i]) for i in chosen]  # type: ignore[misc]


CLASSES: tuple[ClassInfo, ...] = tuple(
    ClassInfo(name, color) for name, color in zip(CLASS_NAMES, palette(len(CLASS_NAMES)),
                                                  strict=True)
)
UNLABELLED = ClassInfo("background", (0, 0, 0))


@dataclass(frozen=True)
class IndexDecoder:
    """Label rasters that already hold class indices 0..``num_classes``: a 256-entry lookup
    table, equivalent to ``ValueDecoder(values=(1, ..., num_classes), ignore_values)`` (other
    values become background, ignore values 255) but one pass instead of one per class."""

    num_classes: int
    ignore_values: tuple[int, ...] = (IGNORE_INDEX,)
    bands: int = 1
    _lut: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lut = np.full(256, BACKGROUND, dtype=np.uint8)
        lut[: self.num_classes + 1] = np.arange(self.num_classes + 1)
        for value in self.ignore_values:
            lut[value] = IGNORE_INDEX
        object.__setattr__(self, "_lut", lut)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        band = raw[0]
        if band.dtype == np.uint8:
            return self._lut[band]
        out = np.full(band.shape, BACKGROUND, dtype=np.uint8)
        inside = (band >= 0) & (band <= 255)
        if np.issubdtype(band.dtype, np.floating):
            inside &= band == np.round(band)
            out[~np.isfinite(band)] = IGNORE_INDEX
        out[inside] = self._lut[band[inside].astype(np.int64)]
        return out


DECODER = IndexDecoder(len(CLASS_NAMES))

#: ADE20K: 60 epochs per step as in MiB/PLOP (the IDEC scripts use 50).
PRESET_OVERRIDES = image_benchmark_presets(60)


def _missing(root: Path, what: str) -> DataError:
    return DataError(
        f"ADE20K not found under {root}: {what}; expected {LAYOUT}. Get ADEChallengeData2016.zip "
        f"from {ADE_URL} ({ZIP_URL}) and unpack it there"
    )


def find_ade_dir(root: Path) -> Path:
    """The ``ADEChallengeData2016`` folder: ``root`` itself or ``root/ADEChallengeData2016``."""
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise _missing(root, "no images/ and annotations/ folders")


def _scenes(ade_dir: Path, folder: str) -> dict[str, Scene]:
    images = ade_dir / "images" / folder
    labels = ade_dir / "annotations" / folder
    found: dict[str, Scene] = {}
    if not images.is_dir():
        return found
    for image in sorted(images.glob("*.jpg")):
        label = labels / f"{image.stem}.png"
        if not label.is_file():
            raise _missing(ade_dir, f"image {image.name} has no annotation {label}")
        found[image.stem] = Scene(name=image.stem, image=image, label=label)
    return found


def ade(root: Path) -> DatasetSpec:
    """ADE20K SceneParsing (ADEChallengeData2016).

    Args:
        root: the ``ADEChallengeData2016`` folder or its parent.

    Raises:
        DataError: one line naming the expected layout and where to download it.
    """
    root = Path(root).resolve()
    ade_dir = find_ade_dir(root)
    training = _scenes(ade_dir, "training")
    validation = _scenes(ade_dir, "validation")
    if not training and not validation:
        raise _missing(root, "no images/training/*.jpg or images/validation/*.jpg")
    train, val = holdout(list(training), HOLDOUT_EVERY)
    return DatasetSpec(
        name="ade20k",
        classes=CLASSES,
        background=UNLABELLED,
        decoder=DECODER,
        splits={
            "train": tuple(training[i] for i in train),
            "val": tuple(training[i] for i in val),
            "test": tuple(validation.values()),
        },
        eval_background=False,
        band_names=("red", "green", "blue"),
        rgb_bands=(0, 1, 2),
        meta={"root": str(root), "crs": None},
        preset_overrides=PRESET_OVERRIDES,
    )


__all__ = ["CLASSES", "CLASS_NAMES", "DECODER", "IndexDecoder", "ade", "palette"]
