"""ISPRS 2D semantic labelling: Potsdam and Vaihingen, read from the original release layouts.

Potsdam (6000 x 6000 px tiles, 5 cm, EPSG:32633)::

    ROOT/2_Ortho_RGB/top_potsdam_2_10_RGB.tif       (or 3_Ortho_IRRG/..._IRRG.tif,
    ROOT/5_Labels_all/top_potsdam_2_10_label.tif         4_Ortho_RGBIR/..._RGBIR.tif)

Vaihingen (9 cm IRRG tiles with no CRS in their headers: read in pixel space)::

    ROOT/top/top_mosaic_09cm_area1.tif
    ROOT/gts_for_participants/top_mosaic_09cm_area1.tif

Labels are RGB colours. Clutter is background (index 0) in training and ignored in evaluation;
the five real classes are evaluated, as in the IDEC paper. Black pixels (the eroded boundaries
of the "noBoundary" labels) and any unknown colour are ignored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.classes import ClassInfo
from geoidec.data.decoders import ColorDecoder
from geoidec.errors import DataError

log = logging.getLogger("geoidec")

#: Evaluation-order classes and their label colours (protocol.md).
CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo("impervious_surfaces", (255, 255, 255)),
    ClassInfo("building", (0, 0, 255)),
    ClassInfo("low_vegetation", (0, 255, 255)),
    ClassInfo("tree", (0, 255, 0)),
    ClassInfo("car", (255, 255, 0)),
)
CLUTTER = ClassInfo("clutter", (255, 0, 0))
DECODER = ColorDecoder({CLUTTER.color: 0, **{c.color: i for i, c in enumerate(CLASSES, 1)}})

POTSDAM_TRAIN = (
    "2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11",
    "5_12", "6_7", "6_8", "6_9", "6_10", "6_11", "6_12", "7_7", "7_8", "7_9", "7_10", "7_11",
    "7_12",
)
POTSDAM_TEST = (
    "2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13",
    "6_14", "6_15", "7_13",
)
#: Held out of train for validation (never tune on test).
POTSDAM_VAL = ("2_12", "7_10")

VAIHINGEN_TRAIN = (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37)
VAIHINGEN_TEST = (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38)
VAIHINGEN_VAL = (30, 37)

POTSDAM_MODALITIES = {
    "rgb": ("2_Ortho_RGB", "RGB", ("red", "green", "blue"), (0, 1, 2)),
    "irrg": ("3_Ortho_IRRG", "IRRG", ("nir", "red", "green"), None),
    "rgbir": ("4_Ortho_RGBIR", "RGBIR", ("red", "green", "blue", "nir"), (0, 1, 2)),
}
POTSDAM_LABEL_DIRS = ("5_Labels_all", "5_Labels_for_participants")
VAIHINGEN_LABEL_DIRS = (
    "gts_for_participants",
    "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE",
)

POTSDAM_URL = "https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-potsdam.aspx"
VAIHINGEN_URL = (
    "https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-vaihingen.aspx"
)


def _missing(name: str, root: Path, expected: str, url: str) -> DataError:
    return DataError(
        f"ISPRS {name} not found under {root}: expected {expected}. Get it from {url}, or run "
        f"'geoidec samples isprs --out {root}' for a synthetic sample in the Potsdam layout"
    )


def _splits(found: dict[str, Scene], train: tuple, test: tuple, val: tuple) -> dict:
    keys = [str(k) for k in found]
    extra = [k for k in keys if k not in {str(t) for t in train + test}]
    train_ids = [str(t) for t in train if str(t) in found] + extra
    val_ids = [str(v) for v in val if str(v) in found]
    if len(train_ids) - len(val_ids) < 1:  # too few train tiles (a sample): keep them all
        val_ids = []
    return {
        "train": tuple(found[t] for t in train_ids if t not in val_ids),
        "val": tuple(found[v] for v in val_ids),
        "test": tuple(found[str(t)] for t in test if str(t) in found),
    }


def potsdam(root: Path, modality: str = "rgb") -> DatasetSpec:
    """ISPRS Potsdam from the original release layout (or the synthetic sample)."""
    root = Path(root).resolve()
    if modality not in POTSDAM_MODALITIES:
        raise DataError(
            f"unknown Potsdam modality '{modality}'; valid: {', '.join(POTSDAM_MODALITIES)}"
        )
    folder, suffix, band_names, rgb = POTSDAM_MODALITIES[modality]
    label_dir = next((root / d for d in POTSDAM_LABEL_DIRS if (root / d).is_dir()), None)
    if not (root / folder).is_dir() or label_dir is None:
        raise _missing("Potsdam", root, f"{folder}/ and 5_Labels_all/", POTSDAM_URL)
    pattern = re.compile(rf"top_potsdam_(\d+_\d+)_{suffix}\.tif$")
    found: dict[str, Scene] = {}
    for image in sorted((root / folder).glob("top_potsdam_*.tif")):
        match = pattern.match(image.name)
        if not match:
            continue
        tile = match.group(1)
        label = label_dir / f"top_potsdam_{tile}_label.tif"
        if label.exists():
            found[tile] = Scene(name=f"top_potsdam_{tile}", image=image, label=label)
    if not found:
        raise _missing("Potsdam", root, f"{folder}/top_potsdam_R_C_{suffix}.tif tiles with "
                       "5_Labels_all/top_potsdam_R_C_label.tif", POTSDAM_URL)
    return DatasetSpec(
        name="isprs_potsdam",
        classes=CLASSES,
        background=CLUTTER,
        decoder=DECODER,
        splits=_splits(found, POTSDAM_TRAIN, POTSDAM_TEST, POTSDAM_VAL),
        eval_background=False,
        band_names=band_names,
        rgb_bands=rgb,
        meta={"root": str(root), "modality": modality},
    )


def vaihingen(root: Path) -> DatasetSpec:
    """ISPRS Vaihingen from the original release layout (tiles have no CRS)."""
    root = Path(root).resolve()
    label_dir = next((root / d for d in VAIHINGEN_LABEL_DIRS if (root / d).is_dir()), None)
    if not (root / "top").is_dir() or label_dir is None:
        raise _missing("Vaihingen", root, "top/ and gts_for_participants/", VAIHINGEN_URL)
    found: dict[str, Scene] = {}
    for image in sorted((root / "top").glob("top_mosaic_09cm_area*.tif")):
        match = re.match(r"top_mosaic_09cm_area(\d+)\.tif$", image.name)
        label = label_dir / image.name
        if match and label.exists():
            found[match.group(1)] = Scene(name=image.stem, image=image, label=label)
    if not found:
        raise _missing("Vaihingen", root, "top/top_mosaic_09cm_areaN.tif with matching labels",
                       VAIHINGEN_URL)
    log.warning("ISPRS Vaihingen tiles have no CRS: reading and predicting them in pixel "
                "space (outputs carry no CRS either)")
    return DatasetSpec(
        name="isprs_vaihingen",
        classes=CLASSES,
        background=CLUTTER,
        decoder=DECODER,
        splits=_splits(found, VAIHINGEN_TRAIN, VAIHINGEN_TEST, VAIHINGEN_VAL),
        eval_background=False,
        band_names=("nir", "red", "green"),
        rgb_bands=None,
        meta={"root": str(root), "crs": None},
    )
