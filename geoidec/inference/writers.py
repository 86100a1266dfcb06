"""GIS-grade outputs of prediction: Cloud-Optimized class GeoTIFF and QGIS style.

:func:`write_class_raster` streams label row bands into a temporary tiled GeoTIFF (never
holding the whole raster), converts it to a Cloud-Optimized GeoTIFF with GDAL's COG
driver (DEFLATE, 256 px blocks, internal overviews) and renames it onto the final path
only when complete. The class raster carries a colour table, class names in the band
metadata and a dataset tag, and gets a QGIS ``.qml`` style beside it so that QGIS shows
classes by name and colour. GDAL's COG driver (GDAL 3.10) carries the colour table, band
description, band tags and dataset tags over from the temporary file; the writer checks
this after the copy.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX

__all__ = ["class_metadata", "write_class_raster", "write_qml"]

BLOCK = 256
"""Tile size of the written GeoTIFFs (pixels)."""

Color = tuple[int, int, int]


def _hex(color: Color) -> str:
    r, g, b = (int(c) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _check_classes(class_names: Sequence[str], colors: Sequence[Color], nodata: int) -> None:
    if len(class_names) != len(colors):
        raise ValueError(f"{len(class_names)} class names but {len(colors)} colours")
    if not 0 < len(class_names) <= 255:
        raise ValueError(f"need 1 to 255 classes, got {len(class_names)}")
    if not 0 <= nodata <= 255 or nodata < len(class_names):
        raise ValueError(f"nodata {nodata} must be a uint8 value above the class indices")
    for color in colors:
        if len(color) < 3 or not all(0 <= int(c) <= 255 for c in color[:3]):
            raise ValueError(f"colour {color!r} is not an (r, g, b) triple of 0..255")


def class_metadata(class_names: Sequence[str], colors: Sequence[Color]) -> list[dict[str, Any]]:
    """Return ``[{'index': i, 'name': ..., 'color': '#rrggbb'}, ...]`` for the dataset tag."""
    return [
        {"index": i, "name": str(name), "color": _hex(color)}
        for i, (name, color) in enumerate(zip(class_names, colors, strict=True))
    ]


def write_qml(
    path_qml: Path,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int = IGNORE_INDEX,
) -> Path:
    """Write a QGIS paletted-raster style so classes appear by name and colour.

    QGIS loads ``<raster base name>.qml`` automatically when the layer is added. The
    nodata value gets no palette entry (QGIS renders nodata transparent).

    Args:
        path_qml: destination, normally the raster path with suffix ``.qml``.
        class_names: class ``i`` is labelled ``class_names[i]``.
        colors: class ``i`` is drawn in ``colors[i]`` (r, g, b).
        nodata: nodata value of the raster (not a class).

    Returns:
        ``path_qml``.
    """
    _check_classes(class_names, colors, nodata)
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
    for i, (name, color) in enumerate(zip(class_names, colors, strict=True)):
        ET.SubElement(
            palette, "paletteEntry", value=str(i), color=_hex(color), label=str(name), alpha="255"
        )
    ET.SubElement(renderer, "colorramp", type="randomcolors", name="[source]")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    tmp = path_qml.with_name(f".{path_qml.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n")
            ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=False)
            fh.write(b"\n")
        os.replace(tmp, path_qml)
    finally:
        tmp.unlink(missing_ok=True)
    return path_qml


def _as_labels(labels: np.ndarray, row_start: int, width: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != width or labels.shape[0] == 0:
        raise ValueError(
            f"band at row {row_start} has shape {labels.shape}, expected (n_rows > 0, {width})"
        )
    if labels.dtype == np.uint8:
        return labels
    if labels.dtype.kind not in "iub":
        raise ValueError(f"band at row {row_start} has non-integer dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"band at row {row_start} has labels outside 0..255")
    return labels.astype(np.uint8)


def _set_class_metadata(
    dst: rasterio.io.DatasetWriter,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int,
) -> None:
    cmap = {i: (*(int(c) for c in color[:3]), 255) for i, color in enumerate(colors)}
    cmap[nodata] = (0, 0, 0, 0)
    dst.write_colormap(1, cmap)
    dst.set_band_description(1, "class")
    dst.update_tags(1, CLASS_NAMES=json.dumps([str(n) for n in class_names]))
    dst.update_tags(1, **{f"CLASS_{i}": str(n) for i, n in enumerate(class_names)})
    dst.update_tags(geoidec_classes=json.dumps(class_metadata(class_names, colors)))


def _check_cog(path: Path, n_classes: int, nodata: int, overviews: bool) -> None:
    """Fail loudly if the COG copy lost the layout, the colour table or the class tags."""
    with rasterio.open(path) as src:
        problems = []
        if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
            problems.append("layout is not COG")
        if src.block_shapes[0] != (BLOCK, BLOCK) and max(src.height, src.width) > BLOCK:
            problems.append(f"blocks {src.block_shapes[0]}")
        if src.nodata != nodata:
            problems.append(f"nodata {src.nodata}")
        try:
            cmap = src.colormap(1)
        except ValueError:
            cmap = {}
        if cmap.get(nodata, (0, 0, 0, 255))[3] != 0:
            problems.append("colour table missing")
        band_tags = src.tags(1)
        if "CLASS_NAMES" not in band_tags or f"CLASS_{n_classes - 1}" not in band_tags:
            problems.append("class tags missing")
        if "geoidec_classes" not in src.tags():
            problems.append("dataset tag missing")
        if overviews and max(src.height, src.width) > BLOCK and not src.overviews(1):
            problems.append("overviews missing")
    if problems:
        raise RuntimeError(f"COG conversion of {path} lost: {', '.join(problems)}")


def write_class_raster(
    path: Path,
    bands: Iterable[tuple[int, np.ndarray]],
    *,
    height: int,
    width: int,
    crs: Any,
    transform: Affine | None,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int = IGNORE_INDEX,
    overwrite: bool = False,
    overviews: bool = True,
    overview_resampling: str = "nearest",
    qml: bool = True,
) -> Path:
    """Stream label bands into a Cloud-Optimized single-band uint8 class GeoTIFF.

    The bands go into ``.{name}.partial.tif`` (tiled 256 x 256, DEFLATE) beside ``path``,
    which GDAL's COG driver copies to ``.{name}.cog.tif`` (DEFLATE, 256 px blocks,
    internal overviews when the raster exceeds one block), which is renamed to ``path``
    only once complete; on any error both temporaries are removed and an existing
    ``path`` is left untouched. Memory holds one band plus GDAL's block cache.

    Written metadata: colour table (class ``i`` -> ``colors[i]``, nodata -> transparent
    black); band description ``"class"``; band tags ``CLASS_NAMES`` (JSON list) and
    ``CLASS_{i}``; dataset tag ``geoidec_classes`` (JSON list of index/name/color). With
    ``qml`` a QGIS style ``path.with_suffix('.qml')`` is written beside it.

    Args:
        path: final GeoTIFF path.
        bands: ``(row_start, labels (n_rows, width))`` in order, covering ``[0, height)``
            exactly once; labels are class indices with ``nodata`` where invalid (any
            integer dtype with values in 0..255 is accepted and cast to uint8).
        height: raster rows.
        width: raster columns.
        crs: anything rasterio accepts as a CRS, or ``None`` for pixel-space inputs (then
            no CRS is written, and an identity ``transform`` is allowed without warnings).
        transform: affine geotransform; ``None`` means identity.
        class_names: names of classes ``0..K-1``.
        colors: ``(r, g, b)`` of classes ``0..K-1``.
        nodata: nodata value, above every class index (default 255).
        overwrite: replace an existing ``path`` (at the final rename only).
        overviews: build internal overviews (skipped by GDAL for rasters within one block).
        overview_resampling: GDAL resampling for overviews, ``"nearest"`` or ``"mode"``.
        qml: also write the QGIS ``.qml`` style.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: bands out of order, of the wrong shape, or not covering the raster.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if height <= 0 or width <= 0:
        raise ValueError(f"raster size must be positive, got {height}x{width}")
    _check_classes(class_names, colors, nodata)
    if overview_resampling.lower() not in ("nearest", "mode"):
        raise ValueError(f"overview_resampling must be nearest or mode, not {overview_resampling}")
    transform = Affine.identity() if transform is None else transform
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.tif")
    cog = path.with_name(f".{path.name}.cog.tif")
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "uint8",
        "nodata": nodata,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "bigtiff": "if_safer",
    }
    try:
        with warnings.catch_warnings():
            if crs is None:
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(partial, "w", **profile) as dst:
                _set_class_metadata(dst, class_names, colors, nodata)
                row = 0
                for row_start, labels in bands:
                    if row_start != row:
                        raise ValueError(f"band starts at row {row_start}, expected {row}")
                    labels = _as_labels(labels, row_start, width)
                    n = labels.shape[0]
                    if row + n > height:
                        raise ValueError(f"band at row {row_start} overruns height {height}")
                    dst.write(labels, 1, window=Window(0, row, width, n))
                    row += n
                if row != height:
                    raise ValueError(f"bands cover rows [0, {row}) of {height}")
            rasterio.shutil.copy(
                partial,
                cog,
                driver="COG",
                COMPRESS="DEFLATE",
                BLOCKSIZE=BLOCK,
                OVERVIEWS="AUTO" if overviews else "NONE",
                OVERVIEW_RESAMPLING=overview_resampling.upper(),
                BIGTIFF="IF_SAFER",
            )
            _check_cog(cog, len(class_names), nodata, overviews)
        os.replace(cog, path)
    finally:
        for tmp in (partial, cog, partial.with_name(partial.name + ".aux.xml")):
            tmp.unlink(missing_ok=True)
    if qml:
        write_qml(path.with_suffix(".qml"), class_names, colors, nodata)
    return path
