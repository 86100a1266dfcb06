"""What a prediction checks before it reads its input: the options, the output paths, the
checkpoint's class codes, and the minimum mapping unit of the polygons in pixels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import rasterio

from geoidec.checkpoint import Checkpoint
from geoidec.errors import DataError, UsageError
from geoidec.files import refuse_existing
from geoidec.inference.checks import log
from geoidec.inference.outputs import OutputPaths

__all__ = ["check_codes", "check_options", "min_area_pixels"]


def check_options(paths: OutputPaths, out: Path, scene_path: Path, batch_size: int,
                  simplify: float, min_area: str | None, overwrite: bool) -> None:
    """Every option checked, and the output folder made, before the input is read."""
    if Path(out).suffix.lower() in (".jpg", ".jpeg"):
        log.warning(f"{scene_path.name}: class maps are not written as JPEG (it would mix "
                    f"class values); writing the palette PNG {paths.classes}")
    if batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {batch_size}")
    if simplify < 0:
        raise UsageError(f"--simplify must be >= 0, got {simplify}")
    min_area_pixels(min_area, rasterio.Affine.identity())  # a bad value stops before any output
    refuse_existing(*paths.requested(), overwrite=overwrite)
    try:
        paths.classes.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder {paths.classes.parent}: "
                        f"{exc.strerror}") from None


def check_codes(checkpoint: Checkpoint, names: list[str], codes: list[int],
                nodata: int) -> None:
    """The checkpoint's class codes can be written: uint8, all different, none the nodata
    code (a dataset YAML ensures this; a checkpoint put together otherwise may not)."""
    seen: dict[int, str] = {}
    for name, code in zip(names, codes, strict=True):
        if not 0 <= code <= 255 or code == nodata:
            raise DataError(f"{checkpoint.path}: class {name} has code {code}, which a uint8 "
                            f"class map with nodata {nodata} cannot hold")
        if code in seen:
            raise DataError(f"{checkpoint.path}: classes {seen[code]} and {name} share the code "
                            f"{code}; give them different codes in the dataset YAML (code:)")
        seen[code] = name


def min_area_pixels(min_area: str | None, transform: Any) -> int:
    """Pixels of the minimum mapping unit ``min_area``: ``"10px"`` is 10 pixels, ``"500"``
    500 square CRS units (rounded up to whole pixels of ``transform``); 0 without one."""
    if min_area is None:
        return 0
    text = str(min_area).strip().lower()
    try:
        value = float(text[:-2] if text.endswith("px") else text)
    except ValueError:
        raise UsageError(f"--min-area {min_area}: give an area in square map units (e.g. "
                         "500 for 500 m²) or pixels (e.g. 10px)") from None
    if value < 0:
        raise UsageError(f"--min-area must be >= 0, got {min_area}")
    if text.endswith("px"):
        return math.ceil(value)
    pixel = abs(transform.a * transform.e - transform.b * transform.d) or 1.0
    return math.ceil(value / pixel - 1e-9)
