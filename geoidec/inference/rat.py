"""GDAL raster attribute tables (RAT) for class rasters, as a PAM ``.aux.xml`` sidecar.

rasterio cannot write RATs and GDAL's Python bindings are not a dependency, so the table is
written as GDAL's own XML serialisation in the Persistent Auxiliary Metadata (PAM) file
``OUT.tif.aux.xml`` beside the raster. GDAL (and so QGIS >= 3.30 and ArcGIS) reads it with
the raster; ``gdalinfo OUT.tif`` prints it::

    <PAMDataset>
      <PAMRasterBand band="1">
        <GDALRasterAttributeTable tableType="thematic">
          <FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>
          ...
          <Row index="0"><F>0</F><F>1234</F><F>clutter</F><F>255</F><F>0</F><F>0</F></Row>
        </GDALRasterAttributeTable>
      </PAMRasterBand>
    </PAMDataset>

Columns: ``Value`` (integer, usage MinMax: the pixel value), ``Count`` (real, usage
PixelCount; pixels of the class, omitted when unknown), ``Class`` (string, usage Name),
``Red``/``Green``/``Blue`` (integer 0..255, usage Red/Green/Blue). One row per class, in
class order, its ``Value`` the class index or, for maps holding a user's class codes, its
code; the nodata value has no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from geoidec.files import atomic_write

__all__ = ["rat_element", "read_rat_sidecar", "write_rat_sidecar"]

# GDALRATFieldType and GDALRATFieldUsage values (gdal.h).
_INTEGER, _REAL, _STRING = 0, 1, 2
_USAGE = {"generic": 0, "pixelcount": 1, "name": 2, "minmax": 5, "red": 6, "green": 7,
          "blue": 8}


def rat_element(
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    counts: Sequence[int] | None = None,
    values: Sequence[int] | None = None,
) -> ET.Element:
    """The ``<GDALRasterAttributeTable>`` element of a thematic class raster.

    Args:
        class_names: name of class ``i`` (``i = 0..K-1``).
        colors: ``(r, g, b)`` of class ``i``.
        counts: pixels of class ``i`` (``len >= K``), or ``None`` for no ``Count`` column.
        values: pixel value of class ``i`` (its code), or ``None``: the value is ``i``.

    Returns:
        The element, ready to append under a ``PAMRasterBand`` or ``VRTRasterBand``.
    """
    if len(class_names) != len(colors):
        raise ValueError(f"{len(class_names)} class names but {len(colors)} colours")
    if values is not None and len(values) != len(class_names):
        raise ValueError(f"{len(values)} values for {len(class_names)} classes")
    fields: list[tuple[str, int, str]] = [("Value", _INTEGER, "minmax")]
    if counts is not None:
        fields.append(("Count", _REAL, "pixelcount"))
    fields += [("Class", _STRING, "name"), ("Red", _INTEGER, "red"),
               ("Green", _INTEGER, "green"), ("Blue", _INTEGER, "blue")]
    table = ET.Element("GDALRasterAttributeTable", tableType="thematic")
    for index, (name, ftype, usage) in enumerate(fields):
        defn = ET.SubElement(table, "FieldDefn", index=str(index))
        ET.SubElement(defn, "Name").text = name
        ET.SubElement(defn, "Type").text = str(ftype)
        ET.SubElement(defn, "Usage").text = str(_USAGE[usage])
    for i, (name, color) in enumerate(zip(class_names, colors, strict=True)):
        row = ET.SubElement(table, "Row", index=str(i))
        cells: list[str] = [str(i if values is None else int(values[i]))]
        if counts is not None:
            cells.append(str(int(counts[i])))
        cells += [str(name), *(str(int(c)) for c in color[:3])]
        for cell in cells:
            ET.SubElement(row, "F").text = cell
    return table


def write_rat_sidecar(
    raster: Path,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    counts: Sequence[int] | None = None,
    band_metadata: dict[str, str] | None = None,
    values: Sequence[int] | None = None,
) -> Path:
    """Write ``raster.aux.xml`` (PAM) holding the RAT of band 1; atomic, replaces any old one.

    Args:
        raster: the raster path (the sidecar is ``<raster>.aux.xml``).
        class_names: class names in class order.
        colors: class colours in class order.
        counts: pixels per class (class order), or ``None``.
        band_metadata: optional band-1 metadata items also stored in the sidecar (for
            formats without band metadata of their own).
        values: pixel value of each class (codes), or ``None`` (the class index).

    Returns:
        The sidecar path.
    """
    raster = Path(raster)
    path = raster.with_name(raster.name + ".aux.xml")
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    if band_metadata:
        meta = ET.SubElement(band, "Metadata")
        for key, value in band_metadata.items():
            ET.SubElement(meta, "MDI", key=key).text = value
    band.append(rat_element(class_names, colors, counts, values))
    ET.indent(root)
    return write_xml(path, root)


def write_xml(path: Path, root: ET.Element) -> Path:
    """Write the XML tree ``root`` to ``path`` atomically (no declaration, as GDAL writes)."""
    return atomic_write(path, lambda tmp: ET.ElementTree(root).write(
        tmp, encoding="utf-8", xml_declaration=False))


def read_rat_sidecar(raster: Path) -> list[dict[str, str]]:
    """Rows of the RAT in ``raster.aux.xml`` as ``{column name: text}`` (for tests/tools)."""
    raster = Path(raster)
    root = ET.parse(raster.with_name(raster.name + ".aux.xml")).getroot()
    table = root.find("PAMRasterBand/GDALRasterAttributeTable")
    if table is None:
        return []
    names = [f.findtext("Name", "") for f in table.findall("FieldDefn")]
    return [dict(zip(names, [f.text or "" for f in row.findall("F")], strict=True))
            for row in table.findall("Row")]
