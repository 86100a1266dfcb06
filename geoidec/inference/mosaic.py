"""The VRT mosaic of a batch's class maps (``DIR/mosaic.vrt`` + ``mosaic.qml``).

Like ``gdalbuildvrt``: the union of the bounds, the average resolution, sources placed by
their geotransforms, nodata 255 (nodata areas of one scene never hide another scene),
colour table, class names and attribute table (keyed by the classes' codes, and nodata the
checkpoint's nodata code, when the checkpoint has codes). Scenes in different CRSs, without
a CRS, or with rotated geotransforms cannot be mosaicked: the VRT is then skipped with a
warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast
from xml.etree import ElementTree as ET

import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from geoidec.constants import IGNORE_INDEX
from geoidec.inference.checks import log
from geoidec.inference.rat import rat_element, write_xml
from geoidec.inference.style import Color, names_by_value, pixel_values, write_qml

__all__ = ["MOSAIC", "write_mosaic_vrt"]

MOSAIC = "mosaic.vrt"
"""File name of a batch's mosaic in its output folder."""


class _Source(NamedTuple):
    """What the VRT needs of one class raster."""

    path: Path
    crs: Any
    transform: Affine
    width: int
    height: int
    block: tuple[int, int]


class _Grid(NamedTuple):
    """The mosaic's pixel grid: top-left corner, resolution and size."""

    left: float
    top: float
    xres: float
    yres: float
    width: int
    height: int


def _fmt(value: float) -> str:
    return repr(float(value))


def _sources(rasters: Sequence[Path]) -> list[_Source]:
    infos: list[_Source] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for path in rasters:
            with rasterio.open(path) as src:
                infos.append(_Source(Path(path), src.crs, src.transform, src.width, src.height,
                                     src.block_shapes[0]))
    return infos


def _common_grid(infos: list[_Source]) -> _Grid | None:
    """The grid covering every source, or ``None`` (with a warning) when there is none."""
    crss = {info[1].to_wkt() if info[1] else None for info in infos}
    if None in crss:
        log.warning(f"mosaic skipped: some class maps have no CRS ({len(infos)} scenes)")
        return None
    if len(crss) > 1:
        log.warning(f"mosaic skipped: the scenes are in {len(crss)} different CRSs; "
                    "reproject them to one CRS to mosaic")
        return None
    if any(t.b != 0 or t.d != 0 or t.e >= 0 for _, _, t, *_ in infos):
        log.warning("mosaic skipped: some scenes have rotated or south-up geotransforms")
        return None
    xs, ys = {t.a for _, _, t, *_ in infos}, {-t.e for _, _, t, *_ in infos}
    xres = xs.pop() if len(xs) == 1 else sum(t.a for _, _, t, *_ in infos) / len(infos)
    yres = ys.pop() if len(ys) == 1 else sum(-t.e for _, _, t, *_ in infos) / len(infos)
    left = min(t.c for _, _, t, *_ in infos)
    top = max(t.f for _, _, t, *_ in infos)
    right = max(t.c + t.a * w for _, _, t, w, _, _ in infos)
    bottom = min(t.f + t.e * h for _, _, t, _, h, _ in infos)
    width = max(1, round((right - left) / xres))
    height = max(1, round((top - bottom) / yres))
    return _Grid(left, top, xres, yres, width, height)


def _class_band(root: ET.Element, class_names: Sequence[str], colors: Sequence[Sequence[int]],
                nodata: int, codes: Sequence[int] | None) -> ET.Element:
    """The VRT's class band: nodata, colour table, category names and attribute table."""
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    ET.SubElement(band, "Description").text = "class"
    ET.SubElement(band, "NoDataValue").text = str(nodata)
    ET.SubElement(band, "ColorInterp").text = "Palette"
    categories = ET.SubElement(band, "CategoryNames")
    for name in names_by_value(class_names, codes):
        ET.SubElement(categories, "Category").text = str(name)
    table = ET.SubElement(band, "ColorTable")
    color_of = dict(zip(pixel_values(len(class_names), codes), colors, strict=True))
    for value in range(256):
        if value in color_of:
            r, g, b = (int(c) for c in color_of[value][:3])
            a = 255
        else:
            r = g = b = a = 0
        ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
    band.append(rat_element(class_names, colors, values=codes))
    return band


def _add_sources(band: ET.Element, infos: list[_Source], grid: _Grid, out: Path,
                 nodata: int) -> None:
    """One ``ComplexSource`` per raster, placed on ``grid`` by its geotransform."""
    left, top, xres, yres = grid.left, grid.top, grid.xres, grid.yres
    for path, _, t, w, h, (bh, bw) in infos:
        source = ET.SubElement(band, "ComplexSource")
        rel = os.path.relpath(path.resolve(), out.resolve().parent)
        ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = rel
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SourceProperties", RasterXSize=str(w), RasterYSize=str(h),
                      DataType="Byte", BlockXSize=str(bw), BlockYSize=str(bh))
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(source, "DstRect", xOff=_fmt((t.c - left) / xres),
                      yOff=_fmt((top - t.f) / yres), xSize=_fmt(w * t.a / xres),
                      ySize=_fmt(h * -t.e / yres))
        ET.SubElement(source, "NODATA").text = str(nodata)


def write_mosaic_vrt(
    rasters: Sequence[Path],
    out: Path,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    *,
    nodata: int = IGNORE_INDEX,
    codes: Sequence[int] | None = None,
) -> Path | None:
    """Write a ``gdalbuildvrt``-style mosaic VRT of single-band class rasters.

    ``codes[i]`` is the pixel value of class ``i`` in maps of class codes (``None``: the
    class index); the colour table, category names and attribute table are keyed by it.

    Returns ``out``, or ``None`` (with a warning) when the rasters cannot share one grid:
    different CRSs, no CRS, or rotated/south-up geotransforms. Later rasters are drawn over
    earlier ones where they overlap, except where they are nodata.
    """
    out = Path(out)
    infos = _sources(rasters)
    grid = _common_grid(infos)
    if grid is None:
        return None
    crs = infos[0][1]
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        _fmt(v) for v in (grid.left, grid.xres, 0.0, grid.top, 0.0, -grid.yres))
    band = _class_band(root, class_names, colors, nodata, codes)
    _add_sources(band, infos, grid, out, nodata)
    ET.indent(root)
    write_xml(out, root)
    write_qml(out.with_suffix(".qml"), class_names,
              cast("list[Color]", [tuple(c[:3]) for c in colors]), nodata, codes)
    return out
