"""A STAC Item beside a predicted class map (``geoidec predict ... --stac``), so a catalogue
(STAC browser, QGIS STAC plugin, pystac) finds the map, its classes and its model.

The Item uses the projection, raster and classification extensions: the footprint in WGS 84
and the map's CRS, shape and transform; the class map asset's nodata and data type; every
class with its code, name and colour. The other outputs of the prediction (confidence,
probabilities, change map, polygons, preview, QGIS style, attribute table) are assets too,
and the model's checkpoint, step and SHA-256 are properties (``geoidec:*``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from geoidec.files import write_text

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
GPKG = "application/geopackage+sqlite3"


def stac_path(classes: Path) -> Path:
    """``OUT.stac.json`` beside the class map ``OUT.tif``."""
    return classes.with_suffix(".stac.json")


def stac_classes(checkpoint: Any) -> list[dict[str, Any]]:
    """The classification extension's classes of ``checkpoint``: ``value`` (the class's code
    in maps, else its output index), ``name`` and ``color_hint`` (RRGGBB)."""
    codes = checkpoint.codes or list(range(checkpoint.num_classes))
    return [{"value": int(code), "name": c.name,
             "color_hint": "{:02X}{:02X}{:02X}".format(*c.color[:3])}
            for code, c in zip(codes, checkpoint.classes, strict=True)]


def _asset(path: Path, media_type: str, roles: list[str], title: str, **extra: Any) -> Any:
    import pystac

    return pystac.Asset(href=f"./{path.name}", media_type=media_type, roles=roles,
                        title=title, extra_fields=extra)


def write_stac_item(prediction: Any, checkpoint: Any, digest: str) -> Path:
    """Write the STAC Item of ``prediction`` (a :class:`geoidec.inference.outputs.Prediction`
    of ``checkpoint``, whose file has SHA-256 ``digest``) beside its class map; its path."""
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    paths = prediction.paths
    with rasterio.open(paths.classes) as src:
        crs, transform, shape, nodata = src.crs, src.transform, src.shape, src.nodata
        bounds = src.bounds
    bbox = geometry = None
    if crs is not None:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
        bbox = [west, south, east, north]
        geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                        [east, north], [west, north],
                                                        [west, south]]]}
    properties = {
        "geoidec:checkpoint": str(Path(checkpoint.path).resolve()),
        "geoidec:step": checkpoint.meta.get("step"),
        "geoidec:sha256": digest,
        "geoidec:dataset": (checkpoint.meta.get("dataset") or {}).get("name"),
        "geoidec:method": checkpoint.meta.get("method"),
    }
    item = pystac.Item(id=paths.classes.stem, geometry=geometry, bbox=bbox,
                       datetime=dt.datetime.now(dt.UTC), properties=properties)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = crs.to_string() if crs is not None else None
    proj.shape = list(shape)
    proj.transform = list(transform)[:6]
    classes_asset = _asset(paths.classes, COG if paths.fmt == "COG" else "image/png",
                           ["data"], "class map")
    item.add_asset("classes", classes_asset)
    RasterExtension.ext(classes_asset, add_if_missing=True).bands = [
        RasterBand.create(nodata=nodata, data_type=DataType.UINT8)]
    ClassificationExtension.ext(classes_asset, add_if_missing=True).classes = [
        Classification.create(**c) for c in stac_classes(checkpoint)]
    extras = [("confidence", paths.confidence, COG, ["data"], "confidence (0-100)"),
              ("probabilities", paths.probabilities, COG, ["data"],
               "class probabilities (0-100, a band per class)"),
              ("change", paths.change, COG, ["data"], "change map (0 unchanged, 1 changed)"),
              ("polygons", paths.vectors, GPKG, ["data"], "class polygons"),
              ("preview", paths.preview, "image/png", ["overview"], "preview")]
    for key, path, media, roles, title in extras:
        if path is not None:
            item.add_asset(key, _asset(path, media, roles, title))
    for path in paths.sidecars():
        key, media, title = (("qgis_style", "text/xml", "QGIS style")
                             if path.suffix == ".qml" else
                             ("attribute_table", "application/xml", "GDAL attribute table"))
        item.add_asset(key, _asset(path, media, ["metadata"], title))
    out = stac_path(paths.classes)
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    return write_text(out, json.dumps(doc, indent=2) + "\n")


#: The STAC Machine Learning Model extension the model Item follows.
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"


def write_model_item(onnx: Path, checkpoint: Any, digest: str, tile: int) -> Path:
    """A STAC Item (Machine Learning Model extension) beside an exported ONNX model:
    ``MODEL.stac.json``, the model an asset, its input (bands, shape, the /255 scaling), its
    output (class probabilities) and classes (code, name, colour) in ``mlm:*`` fields, and
    the checkpoint's path, step and SHA-256 in ``geoidec:*`` properties. No footprint: a
    model has none (geometry null)."""
    import pystac

    bands = list(checkpoint.meta.get("band_names") or
                 [f"band {i + 1}" for i in range(checkpoint.bands)])
    classes = stac_classes(checkpoint)
    shape = [-1, checkpoint.bands, tile, tile]
    properties = {
        "mlm:name": onnx.stem,
        "mlm:architecture": str((checkpoint.meta.get("model") or {}).get("backbone", "")),
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "onnx",
        "mlm:input": [{
            "name": "band values / 255", "bands": bands,
            "input": {"shape": shape, "dim_order": ["batch", "channel", "height", "width"],
                      "data_type": "float32"},
            "value_scaling": [{"type": "scale", "value": 255.0}],
            "pre_processing_function": None,  # the normalisation is inside the model
        }],
        "mlm:output": [{
            "name": "class probabilities", "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, checkpoint.num_classes, tile, tile],
                       "dim_order": ["batch", "channel", "height", "width"],
                       "data_type": "float32"},
            "classification:classes": classes,
        }],
        "geoidec:checkpoint": str(Path(checkpoint.path).resolve()),
        "geoidec:step": checkpoint.meta.get("step"),
        "geoidec:sha256": digest,
        "geoidec:resolution": checkpoint.meta.get("resolution"),
        "geoidec:crs": checkpoint.meta.get("crs"),
    }
    item = pystac.Item(id=onnx.stem, geometry=None, bbox=None,
                       datetime=dt.datetime.now(dt.UTC), properties=properties,
                       stac_extensions=[MLM_SCHEMA])
    item.add_asset("model", pystac.Asset(
        href=f"./{onnx.name}", media_type="application/octet-stream; application=onnx",
        roles=["mlm:model"], title="ONNX model (QGIS Deepness metadata inside)",
        extra_fields={"mlm:artifact_type": "onnx"}))
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    return write_text(stac_path(onnx), json.dumps(doc, indent=2) + "\n")
