"""Dataset names the CLI accepts, with helpful errors; a YAML path means a custom dataset."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from geoidec.data.base import DataError, DatasetSpec

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
        raise DataError(f"unknown dataset '{name}'{hint}; valid: {', '.join(DATASETS)} "
                        "or a path to a dataset YAML")
    loader, default_root = DATASETS[key]
    return loader(Path(root) if root else Path(default_root), modality)
