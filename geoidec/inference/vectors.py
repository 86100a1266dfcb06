"""Class polygons from a finished class raster into a GeoPackage layer.

The class raster is read in row bands of ``band_rows`` rows (memory bounded by a band, never
the scene) and polygonised by :class:`~geoidec.inference.band_polygons.BandPolygonizer`,
which merges the regions across the band borders (a region is never split along a window or
band border). Each finished region is mapped to the raster's CRS with its geotransform,
optionally simplified, and written.

Output: one layer ``classes`` with attributes ``class_id`` (int: the class's output index,
which is also its pixel value in maps without codes), ``class_code`` (int, only for maps
holding the classes' codes: the pixel value, e.g. forest = 5) and ``class_name`` (str),
polygons in the raster's CRS (none for pixel-space rasters). Simplification
(``simplify`` > 0, in CRS units) is topology-preserving per polygon; neighbouring polygons
are simplified independently, so their shared edges may no longer coincide exactly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import shapely.affinity
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.files import refuse_existing
from geoidec.inference.band_polygons import BandPolygonizer

__all__ = ["LAYER", "polygonize_class_raster"]

LAYER = "classes"
"""Layer name in the GeoPackage."""

_FLUSH = 5000
"""Features buffered before an append to the GeoPackage."""


#: Largest map ``--min-area`` sieves (in memory: 1 byte per pixel plus GDAL's polygon ids).
SIEVE_MAX_PIXELS = 400_000_000


def sieved_map(src: Any, min_pixels: int, nodata: int) -> np.ndarray:
    """``src``'s class map with every 4-connected region of fewer than ``min_pixels`` pixels
    merged into its largest neighbour (GDAL's sieve over the whole map; nodata never takes
    part). The whole map is held in memory, so larger maps than :data:`SIEVE_MAX_PIXELS`
    are refused in one line."""
    from geoidec.errors import UsageError

    if src.height * src.width > SIEVE_MAX_PIXELS:
        raise UsageError(f"--min-area sieves the whole class map in memory; this one has "
                         f"{src.height} x {src.width} pixels (at most {SIEVE_MAX_PIXELS:,}): "
                         "predict tiles of the scene, or sieve the map in QGIS "
                         "(Raster > Analysis > Sieve)")
    labels = src.read(1)
    valid = labels != nodata
    sieved = rasterio.features.sieve(labels, size=min_pixels, mask=valid, connectivity=4)
    sieved[~valid] = nodata
    return sieved


def _polygons(geometry: Any) -> list[Any]:
    """Polygons of a (multi)polygon or collection; empty parts dropped."""
    if geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        return [geometry]
    parts = getattr(geometry, "geoms", [])
    return [p for g in parts for p in _polygons(g)]


def polygonize_class_raster(
    raster: Path,
    out: Path,
    class_names: Sequence[str],
    *,
    simplify: float = 0.0,
    band_rows: int = 1024,
    overwrite: bool = False,
    nodata: int | None = None,
    codes: Sequence[int] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    min_pixels: int = 0,
) -> tuple[Path, int]:
    """Polygonise a single-band class raster into a GeoPackage layer, merged across bands.

    Args:
        raster: the class raster (uint8, class indices or codes, nodata masked out).
        out: GeoPackage path (written to ``.{name}.partial.gpkg`` and renamed when done).
        class_names: ``class_names[i]`` is the ``class_name`` of class ``i`` (pixel value
            ``i`` without ``codes``).
        simplify: Douglas-Peucker tolerance in CRS units (pixels without a CRS); 0 = none.
        band_rows: rows read and polygonised at a time (memory bound).
        overwrite: replace an existing ``out``.
        nodata: value left out (default: the raster's nodata, else 255).
        codes: ``codes[i]`` is the pixel value of class ``i`` (a map of codes): polygons
            then get ``class_id`` = ``i`` and ``class_code`` = the pixel value.
        colors: ``colors[i]`` (r, g, b) of class ``i``: a QGIS style in the GeoPackage's
            ``layer_styles`` table draws the polygons in these colours when QGIS opens it.
        min_pixels: minimum mapping unit: regions of fewer pixels are merged into their
            largest neighbour before polygonising (:func:`sieved_map`, the whole map in
            memory; the class raster itself is not changed); 0 or 1 keeps every region.

    Every polygon also gets ``area``, its area in square CRS units (m² in a projected CRS
    in metres; pixels without a CRS).

    Returns:
        ``(out, number of polygons)``.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    refuse_existing(out, overwrite=overwrite)
    if simplify < 0:
        raise ValueError(f"simplify must be >= 0, got {simplify}")
    if band_rows <= 0:
        raise ValueError(f"band_rows must be > 0, got {band_rows}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.gpkg")
    partial.unlink(missing_ok=True)
    names = [str(n) for n in class_names]
    try:
        with rasterio.open(raster) as src:
            layer = _ClassLayer(partial, src.crs, names, codes)
            nd = int(src.nodata) if nodata is None and src.nodata is not None else (
                IGNORE_INDEX if nodata is None else nodata)
            whole = sieved_map(src, min_pixels, nd) if min_pixels > 1 else None
            _polygonize_bands(src, whole, nd, band_rows, simplify, layer)
        if colors is not None:
            from geoidec.inference.vector_style import polygon_style_qml, store_style

            store_style(partial, LAYER, polygon_style_qml(names, colors))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out, layer.written


def _polygonize_bands(src: Any, whole: np.ndarray | None, nodata: int, band_rows: int,
                      simplify: float, layer: _ClassLayer) -> None:
    """Polygonise ``src`` (or its sieved map ``whole``) band by band into ``layer``: each
    finished region mapped to the CRS, simplified when asked, split into polygons."""
    t = src.transform
    matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
    height, width = src.height, src.width
    polygonizer = BandPolygonizer(height)
    for row in range(0, height, band_rows):
        n = min(band_rows, height - row)
        labels = (whole[row:row + n] if whole is not None
                  else src.read(1, window=Window(0, row, width, n)))
        for value, geometry in polygonizer.band(labels, row, nodata):
            geometry = shapely.affinity.affine_transform(geometry, matrix)
            if simplify > 0:
                geometry = geometry.simplify(simplify, preserve_topology=True)
            layer.add(value, _polygons(geometry))
    layer.flush()


class _ClassLayer:
    """The ``classes`` layer of a GeoPackage, appended :data:`_FLUSH` polygons at a time.

    Args:
        path: the GeoPackage.
        crs: the polygons' CRS (``None`` in pixel space).
        names: class names by class index.
        codes: ``codes[i]`` the pixel value of class ``i``, or ``None`` (values are indices).
    """

    def __init__(self, path: Path, crs: Any, names: list[str],
                 codes: Sequence[int] | None) -> None:
        self.path = path
        self.crs = crs
        self.names = names
        self.codes = codes
        if codes is None:
            self.index_of = {i: i for i in range(len(names))}
        else:
            self.index_of = {int(code): i for i, code in enumerate(codes)}
        self.buffer: list[tuple[int, Any]] = []
        self.written = 0

    def add(self, value: int, polygons: list[Any]) -> None:
        """Buffer ``polygons`` of pixel value ``value``; append when the buffer is full."""
        self.buffer.extend((value, p) for p in polygons)
        if len(self.buffer) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        """Append the buffered polygons (the first call creates the layer, even empty)."""
        import geopandas as gpd
        import pyogrio

        buffer, index_of, names = self.buffer, self.index_of, self.names
        if not buffer and self.written:
            return
        values = [v for v, _ in buffer]
        columns: dict[str, Any] = {}
        if self.codes is None:
            columns["class_id"] = np.array(values, dtype=np.int32)
        else:  # a value that is no code (never written by predict) gets id -1
            columns["class_id"] = np.array([index_of.get(v, -1) for v in values],
                                           dtype=np.int32)
            columns["class_code"] = np.array(values, dtype=np.int32)
        columns["class_name"] = [names[index_of[v]] if v in index_of else str(v)
                                 for v in values]
        columns["area"] = np.array([g.area for _, g in buffer], dtype=np.float64)
        frame = gpd.GeoDataFrame(columns, geometry=[g for _, g in buffer], crs=self.crs)
        with warnings.catch_warnings():  # pixel space: "crs was not provided"
            warnings.simplefilter("ignore", UserWarning)
            pyogrio.write_dataframe(frame, self.path, layer=LAYER, driver="GPKG",
                                    geometry_type="Polygon", append=self.path.exists())
        self.written += len(buffer)
        buffer.clear()
