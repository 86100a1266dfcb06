"""Class polygons from a finished class raster, merged across row bands, into a GeoPackage.

The class raster is read in row bands of ``band_rows`` rows (memory bounded by a band, never
the scene). Each band is polygonised with :func:`rasterio.features.shapes` (4-connected
regions, nodata masked out) in *pixel* coordinates, where every vertex is an integer. A
polygon that touches neither the band's top nor its bottom border (inside the scene) is
final and written at once. Pieces that touch a border between two bands are joined with the
pieces across it: two pieces of the same class are one region exactly when the horizontal
runs of their boundaries on the shared border line overlap with positive length (the pixels
above and below are 4-neighbours). Groups of joined pieces are kept (union-find) until no
piece of the group touches the bottom of the band just read; then their pieces are dissolved
with :func:`shapely.union_all` (exact in integer coordinates), mapped to the raster's CRS
with its geotransform, optionally simplified, and written. A region is therefore never split
along a window or band border.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import shape

from geoidec.constants import IGNORE_INDEX
from geoidec.files import refuse_existing

__all__ = ["LAYER", "polygonize_class_raster"]

LAYER = "classes"
"""Layer name in the GeoPackage."""

_FLUSH = 5000
"""Features buffered before an append to the GeoPackage."""


@dataclass
class _Group:
    """Pieces of one region found so far (pixel coordinates)."""

    value: int
    pieces: list[Any] = field(default_factory=list)


def _runs_on_line(polygon: Any, y: float) -> list[tuple[float, float]]:
    """Horizontal boundary runs ``(x0, x1)`` of ``polygon``'s exterior lying on ``y``."""
    coords = np.asarray(polygon.exterior.coords)
    on = (coords[:-1, 1] == y) & (coords[1:, 1] == y)
    if not on.any():
        return []
    xs0, xs1 = coords[:-1, 0][on], coords[1:, 0][on]
    return sorted(zip(np.minimum(xs0, xs1).tolist(), np.maximum(xs0, xs1).tolist(),
                      strict=True))


def _overlapping(
    runs: list[tuple[float, float]], index: list[tuple[float, float, int]]
) -> set[int]:
    """Ids in ``index`` (sorted disjoint runs with ids) overlapping any run with length > 0."""
    found: set[int] = set()
    if not runs or not index:
        return found
    starts = [r[0] for r in index]
    for x0, x1 in runs:
        i = max(0, int(np.searchsorted(starts, x0, side="right")) - 1)
        while i < len(index) and index[i][0] < x1:
            if min(x1, index[i][1]) > max(x0, index[i][0]):
                found.add(index[i][2])
            i += 1
    return found


class _Polygonizer:
    """Band-by-band polygoniser with cross-band merging (see the module docstring)."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.groups: dict[int, _Group] = {}
        self.parent: dict[int, int] = {}
        self.next_id = 0
        #: Per class: sorted (x0, x1, group id) runs on the bottom line of the last band.
        self.open_runs: dict[int, list[tuple[float, float, int]]] = {}

    def _find(self, gid: int) -> int:
        root = gid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[gid] != root:  # path compression
            self.parent[gid], gid = root, self.parent[gid]
        return root

    def _new_group(self, value: int) -> int:
        gid = self.next_id
        self.next_id += 1
        self.groups[gid] = _Group(value)
        self.parent[gid] = gid
        return gid

    def band(self, labels: np.ndarray, row: int, nodata: int) -> Iterator[tuple[int, Any]]:
        """Polygonise rows ``[row, row + n)``; yield ``(class, polygon)`` of finished regions
        in pixel coordinates."""
        n = labels.shape[0]
        top, bottom = float(row), float(row + n)
        has_above, has_below = row > 0, row + n < self.height
        mask = labels != nodata
        next_runs: dict[int, list[tuple[float, float, int]]] = {}
        for geojson, value in rasterio.features.shapes(
            labels, mask=mask, connectivity=4, transform=Affine.translation(0, row)
        ):
            value = int(value)
            polygon = shape(geojson)
            miny, maxy = polygon.bounds[1], polygon.bounds[3]
            at_top = has_above and miny == top
            at_bottom = has_below and maxy == bottom
            if not at_top and not at_bottom:
                yield value, polygon
                continue
            gid = None
            if at_top:
                linked = {self._find(g) for g in _overlapping(
                    _runs_on_line(polygon, top), self.open_runs.get(value, []))}
                if linked:
                    gid, *others = sorted(linked)
                    for other in others:  # this piece joins several regions into one
                        self.groups[gid].pieces += self.groups.pop(other).pieces
                        self.parent[other] = gid
            if gid is None:
                gid = self._new_group(value)
            self.groups[gid].pieces.append(polygon)
            if at_bottom:
                next_runs.setdefault(value, []).extend(
                    (x0, x1, gid) for x0, x1 in _runs_on_line(polygon, bottom))
        # Groups still reaching the bottom line stay open; every other group is complete.
        alive: set[int] = set()
        for value, runs in next_runs.items():
            runs = [(x0, x1, self._find(g)) for x0, x1, g in runs]
            runs.sort()
            next_runs[value] = runs
            alive.update(g for _, _, g in runs)
        self.open_runs = next_runs
        for gid in [g for g in self.groups if g not in alive]:
            group = self.groups.pop(gid)
            # simplify(0) drops the collinear vertices left on band borders (exact here).
            yield group.value, shapely.union_all(group.pieces).simplify(0.0)
        # Union-find entries of finished groups are no longer reachable from open runs.
        self.parent = {g: self._find(g) for g in self.parent if self._find(g) in self.groups}


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
    import geopandas as gpd
    import pyogrio

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
    if codes is None:
        index_of = {i: i for i in range(len(names))}
    else:
        index_of = {int(code): i for i, code in enumerate(codes)}
    written = 0
    try:
        with rasterio.open(raster) as src:
            crs = src.crs
            t = src.transform
            matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
            nd = int(src.nodata) if nodata is None and src.nodata is not None else (
                IGNORE_INDEX if nodata is None else nodata)
            height, width = src.height, src.width
            polygonizer = _Polygonizer(height)
            whole = sieved_map(src, min_pixels, nd) if min_pixels > 1 else None
            buffer: list[tuple[int, Any]] = []

            def flush() -> None:
                nonlocal written
                if not buffer and written:
                    return
                values = [v for v, _ in buffer]
                columns: dict[str, Any] = {}
                if codes is None:
                    columns["class_id"] = np.array(values, dtype=np.int32)
                else:  # a value that is no code (never written by predict) gets id -1
                    columns["class_id"] = np.array([index_of.get(v, -1) for v in values],
                                                   dtype=np.int32)
                    columns["class_code"] = np.array(values, dtype=np.int32)
                columns["class_name"] = [names[index_of[v]] if v in index_of else str(v)
                                         for v in values]
                columns["area"] = np.array([g.area for _, g in buffer], dtype=np.float64)
                frame = gpd.GeoDataFrame(columns, geometry=[g for _, g in buffer], crs=crs)
                with warnings.catch_warnings():  # pixel space: "crs was not provided"
                    warnings.simplefilter("ignore", UserWarning)
                    pyogrio.write_dataframe(frame, partial, layer=LAYER, driver="GPKG",
                                            geometry_type="Polygon", append=partial.exists())
                written += len(buffer)
                buffer.clear()

            for row in range(0, height, band_rows):
                n = min(band_rows, height - row)
                labels = (whole[row:row + n] if whole is not None
                          else src.read(1, window=Window(0, row, width, n)))
                for value, geometry in polygonizer.band(labels, row, nd):
                    geometry = shapely.affinity.affine_transform(geometry, matrix)
                    if simplify > 0:
                        geometry = geometry.simplify(simplify, preserve_topology=True)
                    buffer.extend((value, p) for p in _polygons(geometry))
                    if len(buffer) >= _FLUSH:
                        flush()
            flush()
        if colors is not None:
            from geoidec.inference.vector_style import polygon_style_qml, store_style

            store_style(partial, LAYER, polygon_style_qml(names, colors))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out, written
