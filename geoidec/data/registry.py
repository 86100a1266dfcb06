"""Dataset names the CLI accepts, with helpful errors; a YAML path means a custom dataset."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from geoidec.data.base import DataError, DatasetSpec
from geoidec.errors import UsageError

#: name -> (loader(root, modality), default root)
DATASETS: dict[str, tuple[Callable[[Path, str], DatasetSpec], str]] = {}


def _potsdam(root: Path, modality: str) -> DatasetSpec:
    from geoidec.data.isprs import potsdam

    return potsdam(root, modality)


def _vaihingen(root: Path, modality: str) -> DatasetSpec:
    from geoidec.data.isprs import vaihingen

    return vaihingen(root)


def _voc(root: Path, modality: str) -> DatasetSpec:
    from geoidec.data.voc import voc

    return voc(root)


def _ade(root: Path, modality: str) -> DatasetSpec:
    from geoidec.data.ade import ade

    return ade(root)


for _name in ("isprs", "potsdam", "isprs_potsdam"):
    DATASETS[_name] = (_potsdam, "data/potsdam")
for _name in ("vaihingen", "isprs_vaihingen"):
    DATASETS[_name] = (_vaihingen, "data/vaihingen")
for _name in ("voc", "pascal_voc"):
    DATASETS[_name] = (_voc, "data/VOCdevkit")
for _name in ("ade", "ade20k"):
    DATASETS[_name] = (_ade, "data/ADEChallengeData2016")


def load_dataset(name: str, root: str | Path | None = None, modality: str = "rgb") -> DatasetSpec:
    """``isprs`` (Potsdam), ``vaihingen``, ``voc``, ``ade``, ... or a path to a dataset YAML."""
    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        from geoidec.data.geotiff import load_geotiff_dataset

        if not Path(name).is_file():
            raise DataError(f"dataset YAML not found: {name}")
        return load_geotiff_dataset(name)
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        close = difflib.get_close_matches(key, list(DATASETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown dataset '{name}'{hint}; valid: {', '.join(DATASETS)} "
                        "or a path to a dataset YAML")
    loader, default_root = DATASETS[key]
    return loader(Path(root) if root else Path(default_root), modality)


#: Pixels at least this coarse (metres) are satellite imagery: the ``satellite`` preset.
SATELLITE_PIXEL_M = 2.0
_METRES_PER_DEGREE = 111_320.0


def pixel_size_m(spec: DatasetSpec) -> float | None:
    """Pixel size in metres of the first training image (None without a CRS: pixel space)."""
    from geoidec.data.scene_reader import open_raster

    with open_raster(spec.scenes("train")[0].image) as src:
        if src.crs is None:
            return None
        size = float(max(abs(src.res[0]), abs(src.res[1])))
        if src.crs.is_geographic:
            return size * _METRES_PER_DEGREE
        return size * float(src.crs.linear_units_factor[1])


def auto_preset(spec: DatasetSpec) -> tuple[str, str]:
    """The preset ``--preset auto`` picks, and why: ``satellite`` for pixels of
    :data:`SATELLITE_PIXEL_M` or coarser (Sentinel-2, Landsat: a light full-resolution model on
    small chips), ``cpu`` otherwise (aerial orthophotos, photos)."""
    size = pixel_size_m(spec)
    if size is not None and size >= SATELLITE_PIXEL_M:
        return "satellite", f"{size:g} m pixels"
    where = "no CRS" if size is None else f"{size:g} m pixels"
    return "cpu", where
