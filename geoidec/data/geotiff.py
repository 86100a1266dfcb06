"""Users' own land-cover data: co-registered image/label GeoTIFFs described by a YAML file.

Example (paths are relative to the YAML file)::

    name: my-landcover
    images: {train: [west_image.tif], test: [east_image.tif]}
    labels: {train: [west_labels.tif], test: [east_labels.tif]}
    bands: [1, 2, 3, 4, 5, 6]        # optional; default all bands (1-based)
    ignore_values: [-99999]          # label values never trained nor evaluated (-> 255)
    classes:                          # ordered: step specs count in this order
      - {name: forest, value: 5, color: "#1b7837"}
      - {name: developed, value: 1, color: "#d73027"}

Label values that no class lists become background (index 0). Optional keys: ``val`` split in
``images``/``labels``, ``band_names``, ``rgb_bands`` (1-based, for augmentation and previews),
``background`` (``{name, color, code}``) and ``eval_background`` (default false).

Class codes: predicted class maps hold each class's *code*, its label ``value`` unless the
class gives ``code:`` (needed when label values are not integers 1..254, or to renumber). The
background's code is ``background: {code: 0}`` (default 0) and the nodata value of the maps
``nodata_code`` (default 255). Codes are integers 0..255 (the map is uint8), all different,
none equal to the background's or the nodata code: so 1..254 with the defaults.

``fill_values`` declares per-band fill values the images' metadata does not (a band filled with
0 over whole areas, say): a mapping from a band (its 1-based band number in the files, or a
name listed in ``band_names``) to its fill value, e.g. ``fill_values: {B11: 0, 6: 65535}``.
A pixel where any band holds its fill value is nodata (never trained on nor evaluated; nodata
in predicted maps). Undeclared fill values found in the training images are reported and
treated the same way (see :func:`geoidec.data.normalization.detect_fill_values`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from geoidec.config import ConfigError, read_yaml
from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.classes import ClassInfo
from geoidec.data.decoders import ValueDecoder
from geoidec.data.geotiff_classes import (
    background_class,
    class_codes,
    read_background,
    read_classes,
    yaml_error,
)
from geoidec.data.scene_reader import open_raster
from geoidec.errors import DataError

KEYS = {
    "name", "images", "labels", "bands", "ignore_values", "classes", "band_names", "rgb_bands",
    "background", "eval_background", "description", "fill_values", "nodata_code",
}
SPLITS = ("train", "val", "test")


def load_geotiff_dataset(path: str | Path) -> DatasetSpec:
    """Read a dataset YAML; every error is one line naming the file and the key."""
    path = Path(path).resolve()
    doc = _read_doc(path)
    images = _files(path, doc["images"], "images")
    labels = _files(path, doc["labels"], "labels")
    classes, values = read_classes(path, doc["classes"])
    background = read_background(path, doc)
    codes, background_code, nodata_code = class_codes(path, doc, doc["classes"], values)
    classes = [ClassInfo(c.name, c.color, code) for c, code in zip(classes, codes, strict=True)]
    bands = _bands(path, doc)
    _check_files(path, images, labels)
    fill = _fill_values(path, doc, bands, images["train"][0])
    splits = _scenes(images, labels, bands, fill)
    rgb_bands = _rgb_bands(doc, bands)
    return DatasetSpec(
        name=str(doc.get("name", path.stem)),
        classes=tuple(classes),
        decoder=ValueDecoder(
            values=tuple(values),
            ignore_values=tuple(float(v) for v in doc.get("ignore_values") or ()),
        ),
        splits=splits,
        background=background_class(path, background, background_code),
        eval_background=bool(doc.get("eval_background", False)),
        band_names=tuple(doc.get("band_names") or ()),
        rgb_bands=rgb_bands,  # type: ignore[arg-type]
        meta={"yaml": str(path)},
        nodata_code=nodata_code,
    )


def _read_doc(path: Path) -> dict:
    """The YAML's mapping, its keys checked (none unknown, images, labels and classes given)."""
    try:
        doc = read_yaml(path)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if not isinstance(doc, dict):
        raise yaml_error(path, "a dataset YAML must be a mapping with images, labels and "
                               "classes")
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise yaml_error(path, f"unknown key(s) {unknown}; valid: {', '.join(sorted(KEYS))}")
    for key in ("images", "labels", "classes"):
        if key not in doc:
            raise yaml_error(path, f"missing '{key}'")
    return doc


def _files(path: Path, section: Any, key: str) -> dict[str, list[Path]]:
    if not isinstance(section, dict):
        raise yaml_error(path, f"'{key}' must map splits to file lists, e.g. {{train: [a.tif]}}")
    bad = [s for s in section if s not in SPLITS]
    if bad:
        raise yaml_error(path, f"'{key}' has unknown split(s) {bad}; valid: {', '.join(SPLITS)}")
    out: dict[str, list[Path]] = {}
    for split, names in section.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise yaml_error(path, f"'{key}.{split}' must be a list of file names")
        out[split] = [(path.parent / n).resolve() for n in names]
    return out


def _bands(path: Path, doc: dict) -> list[int] | None:
    """``bands`` (1-based band numbers), or None to read every band."""
    bands = doc.get("bands")
    if bands is not None and (
        not isinstance(bands, list) or not all(isinstance(b, int) and b >= 1 for b in bands)
    ):
        raise yaml_error(path, "'bands' must be a list of 1-based band numbers, e.g. [1, 2, 3]")
    return bands


def _check_files(path: Path, images: dict[str, list[Path]], labels: dict[str, list[Path]]
                 ) -> None:
    """One label per image in every split, every file present, some training images."""
    for split in SPLITS:
        imgs, labs = images.get(split, []), labels.get(split, [])
        if len(imgs) != len(labs):
            raise yaml_error(path, f"{len(imgs)} {split} image(s) but {len(labs)} label file(s)")
        for f in imgs + labs:
            if not f.exists():
                raise yaml_error(path, f"file not found: {f} (paths are relative to the YAML "
                                       "file)")
    if not images.get("train"):
        raise yaml_error(path, "no training images: list some under images.train")


def _scenes(images: dict[str, list[Path]], labels: dict[str, list[Path]],
            bands: list[int] | None, fill: tuple[float | None, ...]
            ) -> dict[str, tuple[Scene, ...]]:
    """The scenes of every split (image, label, bands read, fill values)."""
    return {
        split: tuple(
            Scene(name=i.stem, image=i, label=lab, bands=tuple(bands) if bands else None,
                  fill=fill)
            for i, lab in zip(images.get(split, []), labels.get(split, []), strict=True)
        )
        for split in SPLITS
    }


def _rgb_bands(doc: dict, bands: list[int] | None) -> tuple[int, ...] | None:
    """0-based indexes of the red, green and blue bands: ``rgb_bands`` (1-based) if given,
    else the first three bands when at least three are read."""
    rgb = doc.get("rgb_bands")
    n_bands = len(bands) if bands else None
    if rgb is None:
        return (0, 1, 2) if n_bands is None or n_bands >= 3 else None
    return tuple(int(b) - 1 for b in rgb)


def _fill_values(path: Path, doc: dict, bands: list[int] | None,
                 first_image: Path) -> tuple[float | None, ...]:
    """``fill_values`` as one entry per band read (None: no fill value); () without it."""
    section = doc.get("fill_values")
    if section is None:
        return ()
    example = "e.g. {B11: 0, 6: 65535}"
    if not isinstance(section, dict):
        raise yaml_error(path, "'fill_values' must map bands (1-based numbers or names from "
                               f"band_names) to fill values, {example}")
    if bands is None:
        with open_raster(first_image) as src:
            count = src.count
        numbers = list(range(1, count + 1))
    else:
        numbers = list(bands)
    names = [str(n) for n in doc.get("band_names") or ()]
    fill: list[float | None] = [None] * len(numbers)
    for key, value in section.items():
        if isinstance(key, str) and key in names:
            index = names.index(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            if key not in numbers:
                have = (f"'bands' reads {numbers}" if bands is not None
                        else f"the images have {len(numbers)} band(s)")
                raise yaml_error(path, f"fill_values: band {key} is not read ({have})")
            index = numbers.index(key)
        else:
            known = f"band_names are {names}" if names else "no band_names are given"
            raise yaml_error(path, f"fill_values: band {key!r} is neither a 1-based band number "
                                   f"nor a name listed in band_names ({known})")
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise yaml_error(path, f"fill_values.{key}: {value!r} is not a number; give the band's "
                                   f"fill value, {example}")
        if index >= len(fill):
            raise yaml_error(path, f"fill_values: band {key!r} is not read (band_names lists more "
                                   "names than bands read)")
        if fill[index] is not None:
            raise yaml_error(path, f"fill_values: band {numbers[index]} is given twice (by number "
                                   "and by name)")
        fill[index] = float(value)
    return tuple(fill)
