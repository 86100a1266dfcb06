"""The classes of a dataset YAML (:mod:`geoidec.data.geotiff`): names, label values, display
colours, the background and the codes of the class map, each checked with a one-line error
naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoidec.data.classes import ClassInfo, parse_color
from geoidec.errors import DataError

CLASS_KEYS = {"name", "value", "color", "code"}
BACKGROUND_KEYS = {"name", "color", "code"}


def yaml_error(path: Path, message: str) -> DataError:
    """A one-line error about the dataset YAML ``path``."""
    return DataError(f"{path}: {message}")


def read_classes(path: Path, classes_doc: Any) -> tuple[list[ClassInfo], list[float]]:
    """The ``classes`` list (without codes) and each class's label value, checked: names and
    values unique, at most 254 classes."""
    if not isinstance(classes_doc, list) or not classes_doc:
        raise yaml_error(path, "'classes' must be a non-empty list of {name, value, color}")
    classes, values = [], []
    for i, item in enumerate(classes_doc):
        if not isinstance(item, dict) or not {"name", "value"} <= set(item):
            raise yaml_error(path, f"classes[{i}] needs at least 'name' and 'value'")
        extra = set(item) - CLASS_KEYS
        if extra:
            raise yaml_error(path, f"classes[{i}] has unknown key(s) {sorted(extra)}; valid: "
                                   f"{', '.join(sorted(CLASS_KEYS))}")
        color = parse_color(item.get("color", _default_color(i)), f"{path} classes[{i}]")
        classes.append(ClassInfo(str(item["name"]), color))
        values.append(float(item["value"]))
    names = [c.name for c in classes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise yaml_error(path, f"class name(s) {dupes} listed twice")
    if len(set(values)) != len(values):
        raise yaml_error(path, "two classes share the same label value")
    if len(classes) > 254:
        raise yaml_error(path, "at most 254 classes are supported")
    return classes, values


def read_background(path: Path, doc: dict) -> dict:
    """The ``background`` mapping (empty without it), its keys checked."""
    background = doc.get("background") or {}
    if not isinstance(background, dict):
        raise yaml_error(path, "'background' must be a mapping, e.g. {name: other, color: "
                               "'#000000', code: 0}")
    extra = set(background) - BACKGROUND_KEYS
    if extra:
        raise yaml_error(path, f"background has unknown key(s) {sorted(extra)}; valid: "
                               f"{', '.join(sorted(BACKGROUND_KEYS))}")
    return background


def background_class(path: Path, background: dict, code: int) -> ClassInfo:
    """The background as a class: its name and colour (defaults: background, black)."""
    return ClassInfo(
        str(background.get("name", "background")),
        parse_color(background.get("color", "#000000"), f"{path} background"),
        code,
    )


def _explicit_code(path: Path, where: str, value: Any) -> int:
    """A code given in the YAML: an integer 0..255, else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise yaml_error(path, f"{where} {value!r} is not an integer; codes in the class map are "
                               "integers 0..255 (uint8), e.g. 5")
    if not 0 <= value <= 255:
        raise yaml_error(path, f"{where} {value} is outside 0..255 (the class map is uint8); "
                               "give a class a code in 1..254")
    return value


def class_codes(path: Path, doc: dict, classes_doc: list, values: list[float]
                ) -> tuple[list[int], int, int]:
    """Each class's code in the class map (its ``code:``, else its label value), the
    background's code and the nodata code, checked: integers 0..255, all different."""
    nodata = _explicit_code(path, "nodata_code:", doc.get("nodata_code", 255))
    background = (doc.get("background") or {}).get("code", 0)
    background = _explicit_code(path, "background.code:", background)
    if background == nodata:
        raise yaml_error(path, f"background.code {background} equals nodata_code {nodata}; give "
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
            raise yaml_error(path, f"{where}: label value {item['value']!r} cannot be its code in "
                                   "the class map (codes are integers 1..254, uint8); add an "
                                   f"explicit code, e.g. {{name: {name}, value: {item['value']!r}, "
                                   "code: 1}")
        if code == background:
            raise yaml_error(path, f"{where} has code {code} ({source}), the background's code; "
                                   "give the class another code: (1..254) or set background: "
                                   "{code: N}")
        if code == nodata:
            raise yaml_error(path, f"{where} has code {code} ({source}), the nodata code "
                                   f"(nodata_code: {nodata}); give the class another code: or set "
                                   "nodata_code")
        if code in seen:
            j = seen[code]
            raise yaml_error(path, f"classes[{j}] ({classes_doc[j]['name']}) and {where} both have "
                                   f"code {code}; give one of them another code: (1..254)")
        seen[code] = i
        codes.append(code)
    return codes, background, nodata


#: Display colours of classes the YAML gives no ``color`` (cycled in list order).
_PALETTE = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bebada",
)


def _default_color(i: int) -> str:
    """The display colour of the ``i``-th class when the YAML gives none."""
    return _PALETTE[i % len(_PALETTE)]
