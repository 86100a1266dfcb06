"""Class values, names and colours of a class raster, and its QGIS style (``.qml``).

A class map's pixels hold each class's value: its index, or its code when the classes carry
codes (a user's own label values). :func:`write_qml` writes the paletted style QGIS loads
beside the raster; :func:`class_metadata` and :func:`names_by_value` give the metadata
written into the raster itself (see :mod:`geoidec.inference.class_raster`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from geoidec.constants import IGNORE_INDEX
from geoidec.files import atomic_write

__all__ = ["Color", "check_classes", "class_metadata", "names_by_value", "pixel_values",
           "write_qml"]

Color = tuple[int, int, int]


def _hex(color: Color) -> str:
    r, g, b = (int(c) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def check_classes(class_names: Sequence[str], colors: Sequence[Color], nodata: int,
                   codes: Sequence[int] | None = None) -> None:
    if len(class_names) != len(colors):
        raise ValueError(f"{len(class_names)} class names but {len(colors)} colours")
    if not 0 < len(class_names) <= 255:
        raise ValueError(f"need 1 to 255 classes, got {len(class_names)}")
    if codes is None:
        if not 0 <= nodata <= 255 or nodata < len(class_names):
            raise ValueError(f"nodata {nodata} must be a uint8 value above the class indices")
    else:
        if len(codes) != len(class_names):
            raise ValueError(f"{len(codes)} codes for {len(class_names)} classes")
        if not all(isinstance(c, int | np.integer) and 0 <= c <= 255 for c in codes):
            raise ValueError(f"class codes {list(codes)} must be uint8 values (0..255)")
        if len(set(codes)) != len(codes):
            raise ValueError(f"class codes {list(codes)} must all differ")
        if not 0 <= nodata <= 255 or nodata in codes:
            raise ValueError(f"nodata {nodata} must be a uint8 value that is no class code")
    for color in colors:
        if len(color) < 3 or not all(0 <= int(c) <= 255 for c in color[:3]):
            raise ValueError(f"colour {color!r} is not an (r, g, b) triple of 0..255")


def pixel_values(n_classes: int, codes: Sequence[int] | None) -> list[int]:
    """The pixel value of each class: its code, or its index without codes."""
    return list(range(n_classes)) if codes is None else [int(c) for c in codes]


def class_metadata(class_names: Sequence[str], colors: Sequence[Color],
                   codes: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Return ``[{'index': i, 'name': ..., 'color': '#rrggbb'}, ...]`` for the dataset tag,
    with ``'code'`` (the pixel value) in each entry when ``codes`` are given."""
    meta = [
        {"index": i, "name": str(name), "color": _hex(color)}
        for i, (name, color) in enumerate(zip(class_names, colors, strict=True))
    ]
    if codes is not None:
        for entry, code in zip(meta, codes, strict=True):
            entry["code"] = int(code)
    return meta


def names_by_value(class_names: Sequence[str], codes: Sequence[int] | None) -> list[str]:
    """Class names indexed by pixel value (``""`` for values that are no class), like GDAL's
    category names; ``class_names`` itself without codes."""
    if codes is None:
        return [str(n) for n in class_names]
    out = [""] * (max(int(c) for c in codes) + 1)
    for name, code in zip(class_names, codes, strict=True):
        out[int(code)] = str(name)
    return out


def write_qml(
    path_qml: Path,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int = IGNORE_INDEX,
    codes: Sequence[int] | None = None,
) -> Path:
    """Write a QGIS paletted-raster style so classes appear by name and colour.

    QGIS loads ``<raster base name>.qml`` automatically when the layer is added. The
    nodata value gets no palette entry (QGIS renders nodata transparent).

    Args:
        path_qml: destination, normally the raster path with suffix ``.qml``.
        class_names: class ``i`` is labelled ``class_names[i]``.
        colors: class ``i`` is drawn in ``colors[i]`` (r, g, b).
        nodata: nodata value of the raster (not a class).
        codes: pixel value of class ``i`` (default ``i``).

    Returns:
        ``path_qml``.
    """
    check_classes(class_names, colors, nodata, codes)
    path_qml = Path(path_qml)
    root = ET.Element("qgis", version="3.22.0", styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        type="paletted",
        band="1",
        opacity="1",
        alphaBand="-1",
        nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    values = pixel_values(len(class_names), codes)
    for value, name, color in zip(values, class_names, colors, strict=True):
        ET.SubElement(
            palette, "paletteEntry", value=str(value), color=_hex(color), label=str(name),
            alpha="255"
        )
    ET.SubElement(renderer, "colorramp", type="randomcolors", name="[source]")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n")
            ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=False)
            fh.write(b"\n")

    return atomic_write(path_qml, write)
