"""A QGIS style stored inside the class-polygon GeoPackage, so the layer opens in the class
colours (QGIS reads the ``layer_styles`` table of a GeoPackage and applies the default style
of a layer when it is added)."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

#: The table QGIS (and GDAL's GPKG driver) use for layer styles.
STYLES_TABLE = "layer_styles"


def polygon_style_qml(class_names: Sequence[str], colors: Sequence[Sequence[int]],
                      field: str = "class_name") -> str:
    """A QGIS categorized-renderer style (QML) of polygons by ``field``: class ``i`` filled
    in ``colors[i]`` and labelled ``class_names[i]`` in the legend, thin dark outlines."""
    root = ET.Element("qgis", version="3.22.0", styleCategories="Symbology")
    renderer = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", attr=field,
                             symbollevels="0", enableorderby="0", forceraster="0")
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (name, color) in enumerate(zip(class_names, colors, strict=True)):
        ET.SubElement(categories, "category", symbol=str(i), value=str(name),
                      label=str(name), render="true")
        symbol = ET.SubElement(symbols, "symbol", type="fill", name=str(i), alpha="1",
                               clip_to_extent="1", force_rhr="0")
        layer = ET.SubElement(symbol, "layer", attrib={"class": "SimpleFill", "enabled": "1",
                                                      "locked": "0", "pass": "0"})
        rgba = ",".join(str(int(c)) for c in (*tuple(color)[:3], 255))
        props = {"color": rgba, "outline_color": "35,35,35,255", "outline_style": "solid",
                 "outline_width": "0.1", "outline_width_unit": "MM", "style": "solid"}
        options = ET.SubElement(layer, "Option", type="Map")  # QGIS >= 3.26
        for key, value in props.items():
            ET.SubElement(options, "Option", name=key, type="QString", value=value)
        for key, value in props.items():  # QGIS < 3.26
            ET.SubElement(layer, "prop", k=key, v=value)
    ET.indent(root)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            + ET.tostring(root, encoding="unicode") + "\n")


def store_style(gpkg: Path, layer: str, qml: str, name: str = "geoidec classes") -> None:
    """Store ``qml`` as the default style of ``layer`` in ``gpkg``'s ``layer_styles`` table
    (created and registered in ``gpkg_contents`` as an attributes table, as QGIS does)."""
    with sqlite3.connect(gpkg) as db:
        geometry = db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE "
                              "table_name = ?", (layer,)).fetchone()
        db.execute(f"""CREATE TABLE IF NOT EXISTS {STYLES_TABLE} (
            id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256),
            f_table_schema TEXT(256), f_table_name TEXT(256), f_geometry_column TEXT(256),
            styleName TEXT(30), styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN,
            description TEXT, owner TEXT(30), ui TEXT(30),
            update_time DATETIME DEFAULT CURRENT_TIMESTAMP)""")
        db.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
                   "VALUES (?, 'attributes', ?)", (STYLES_TABLE, STYLES_TABLE))
        db.execute(f"INSERT INTO {STYLES_TABLE} (f_table_catalog, f_table_schema, "
                   "f_table_name, f_geometry_column, styleName, styleQML, styleSLD, "
                   "useAsDefault, description, owner) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, "
                   "'geoidec')",
                   (layer, geometry[0] if geometry else "geom", name, qml,
                    "class colours of the geoidec class map"))
