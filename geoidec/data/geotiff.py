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
from geoidec.data.classes import ClassInfo, parse_color
from geoidec.data.decoders import ValueDecoder
from geoidec.data.scene_reader import open_raster
from geoidec.errors import DataError

KEYS = {
    "name", "images", "labels", "bands", "ignore_values", "classes", "band_names", "rgb_bands",
    "background", "eval_background", "description", "fill_values", "nodata_code",
}
CLASS_KEYS = {"name", "value", "color", "code"}
BACKGROUND_KEYS = {"name", "color", "code"}
SPLITS = ("train", "val", "test")


def _fail(path: Path, message: str) -> DataError:
    return DataError(f"{path}: {message}")


def _files(path: Path, section: Any, key: str) -> dict[str, list[Path]]:
    if not isinstance(section, dict):
        raise _fail(path, f"'{key}' must map splits to file lists, e.g. {{train: [a.tif]}}")
    bad = [s for s in section if s not in SPLITS]
    if bad:
        raise _fail(path, f"'{key}' has unknown split(s) {bad}; valid: {', '.join(SPLITS)}")
    out: dict[str, list[Path]] = {}
    for split, names in section.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _fail(path, f"'{key}.{split}' must be a list of file names")
        out[split] = [(path.parent / n).resolve() for n in names]
    return out


def _fill_values(path: Path, doc: dict, bands: list[int] | None,
                 first_image: Path) -> tuple[float | None, ...]:
    """``fill_values`` as one entry per band read (None: no fill value); () without it."""
    section = doc.get("fill_values")
    if section is None:
        return ()
    example = "e.g. {B11: 0, 6: 65535}"
    if not isinstance(section, dict):
        raise _fail(path, "'fill_values' must map bands (1-based numbers or names from "
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
                raise _fail(path, f"fill_values: band {key} is not read ({have})")
            index = numbers.index(key)
        else:
            known = f"band_names are {names}" if names else "no band_names are given"
            raise _fail(path, f"fill_values: band {key!r} is neither a 1-based band number nor "
                              f"a name listed in band_names ({known})")
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise _fail(path, f"fill_values.{key}: {value!r} is not a number; give the band's "
                              f"fill value, {example}")
        if index >= len(fill):
            raise _fail(path, f"fill_values: band {key!r} is not read (band_names lists more "
                              "names than bands read)")
        if fill[index] is not None:
            raise _fail(path, f"fill_values: band {numbers[index]} is given twice (by number "
                              "and by name)")
        fill[index] = float(value)
    return tuple(fill)


def load_geotiff_dataset(path: str | Path) -> DatasetSpec:
    """Read a dataset YAML; every error is one line naming the file and the key."""
    path = Path(path).resolve()
    try:
        doc = read_yaml(path)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if not isinstance(doc, dict):
        raise _fail(path, "a dataset YAML must be a mapping with images, labels and classes")
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}; valid: {', '.join(sorted(KEYS))}")
    for key in ("images", "labels", "classes"):
        if key not in doc:
            raise _fail(path, f"missing '{key}'")
    images = _files(path, doc["images"], "images")
    labels = _files(path, doc["labels"], "labels")
    classes_doc = doc["classes"]
    if not isinstance(classes_doc, list) or not classes_doc:
        raise _fail(path, "'classes' must be a non-empty list of {name, value, color}")
    classes, values = [], []
    for i, item in enumerate(classes_doc):
        if not isinstance(item, dict) or not {"name", "value"} <= set(item):
            raise _fail(path, f"classes[{i}] needs at least 'name' and 'value'")
        extra = set(item) - CLASS_KEYS
        if extra:
            raise _fail(path, f"classes[{i}] has unknown key(s) {sorted(extra)}; valid: "
                              f"{', '.join(sorted(CLASS_KEYS))}")
        color = parse_color(item.get("color", _default_color(i)), f"{path} classes[{i}]")
        classes.append(ClassInfo(str(item["name"]), color))
        values.append(float(item["value"]))
    names = [c.name for c in classes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail(path, f"class name(s) {dupes} listed twice")
    if len(set(values)) != len(values):
        raise _fail(path, "two classes share the same label value")
    if len(classes) > 254:
        raise _fail(path, "at most 254 classes are supported")
    background = doc.get("background") or {}
    if not isinstance(background, dict):
        raise _fail(path, "'background' must be a mapping, e.g. {name: other, color: "
                          "'#000000', code: 0}")
    extra = set(background) - BACKGROUND_KEYS
    if extra:
        raise _fail(path, f"background has unknown key(s) {sorted(extra)}; valid: "
                          f"{', '.join(sorted(BACKGROUND_KEYS))}")
    codes, background_code, nodata_code = _codes(path, doc, classes_doc, values)
    classes = [ClassInfo(c.name, c.color, code) for c, code in zip(classes, codes, strict=True)]
    bands = doc.get("bands")
    if bands is not None and (
        not isinstance(bands, list) or not all(isinstance(b, int) and b >= 1 for b in bands)
    ):
        raise _fail(path, "'bands' must be a list of 1-based band numbers, e.g. [1, 2, 3]")
    for split in SPLITS:
        imgs, labs = images.get(split, []), labels.get(split, [])
        if len(imgs) != len(labs):
            raise _fail(path, f"{len(imgs)} {split} image(s) but {len(labs)} label file(s)")
        for f in imgs + labs:
            if not f.exists():
                raise _fail(path, f"file not found: {f} (paths are relative to the YAML file)")
    if not images.get("train"):
        raise _fail(path, "no training images: list some under images.train")
    fill = _fill_values(path, doc, bands, images["train"][0])
    splits: dict[str, tuple[Scene, ...]] = {
        split: tuple(
            Scene(name=i.stem, image=i, label=lab, bands=tuple(bands) if bands else None,
                  fill=fill)
            for i, lab in zip(images.get(split, []), labels.get(split, []), strict=True)
        )
        for split in SPLITS
    }
    rgb = doc.get("rgb_bands")
    n_bands = len(bands) if bands else None
    rgb_bands: tuple[int, ...] | None
    if rgb is None:
        rgb_bands = (0, 1, 2) if n_bands is None or n_bands >= 3 else None
    else:
        rgb_bands = tuple(int(b) - 1 for b in rgb)
    return DatasetSpec(
        name=str(doc.get("name", path.stem)),
        classes=tuple(classes),
        decoder=ValueDecoder(
            values=tuple(values),
            ignore_values=tuple(float(v) for v in doc.get("ignore_values") or ()),
        ),
        splits=splits,
        background=ClassInfo(
            str(background.get("name", "background")),
            parse_color(background.get("color", "#000000"), f"{path} background"),
            background_code,
        ),
        eval_background=bool(doc.get("eval_background", False)),
        band_names=tuple(doc.get("band_names") or ()),
        rgb_bands=rgb_bands,  # type: ignore[arg-type]
        meta={"yaml": str(path)},
        nodata_code=nodata_code,
    )


def _explicit_code(path: Path, where: str, value: Any) -> int:
    """A code given in the YAML: an integer 0..255, else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{where} {value!r} is not an integer; codes in the class map are "
                          "integers 0..255 (uint8), e.g. 5")
    if not 0 <= value <= 255:
        raise _fail(path, f"{where} {value} is outside 0..255 (the class map is uint8); "
                          "give a class a code in 1..254")
    return value


def _codes(path: Path, doc: dict, classes_doc: list, values: list[float]
           ) -> tuple[list[int], int, int]:
    """Each class's code in the class map (its ``code:``, else its label value), the
    background's code and the nodata code, checked: integers 0..255, all different."""
    nodata = _explicit_code(path, "nodata_code:", doc.get("nodata_code", 255))
    background = (doc.get("background") or {}).get("code", 0)
    background = _explicit_code(path, "background.code:", background)
    if background == nodata:
        raise _fail(path, f"background.code {background} equals nodata_code {nodata}; give "
                          "them different values (defaults: background 0, nodata 255)")
    codes: list[int] = []
    seen: dict[int, int] = {}
    for i, (item, value) in enumerate(zip(classes_doc, values, strict=True)):
        name = item["name"]
        where = f"classes[{i}] ({name})"
        if "code" in item:
            code = _explicit_code(path, f"{where} code:", item["code"])
            source = "its code:"
        elif value.is_integer() and 0 <= value <= 255:
            code, source = int(value), "its label value"
        else:
            raise _fail(path, f"{where}: label value {item['value']!r} cannot be its code in "
                              "the class map (codes are integers 1..254, uint8); add an "
                              f"explicit code, e.g. {{name: {name}, value: {item['value']!r}, "
                              "code: 1}")
        if code == background:
            raise _fail(path, f"{where} has code {code} ({source}), the background's code; "
                              "give the class another code: (1..254) or set background: "
                              "{code: N}")
        if code == nodata:
            raise _fail(path, f"{where} has code {code} ({source}), the nodata code "
                              f"(nodata_code: {nodata}); give the class another code: or set "
                              "nodata_code")
        if code in seen:
            j = seen[code]
            raise _fail(path, f"classes[{j}] ({classes_doc[j]['name']}) and {where} both have "
                              f"code {code}; give one of them another code: (1..254)")
        seen[code] = i
        codes.append(code)
    return codes, background, nodata


_PALETTE = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bebada",
)


def _default_color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]
