"""Class polygons of a class raster read in row bands, merged across the band borders.

Each band is polygonised with :func:`rasterio.features.shapes` (4-connected regions, nodata
masked out) in *pixel* coordinates, where every vertex is an integer. A polygon that touches
neither the band's top nor its bottom border (inside the scene) is final and handed out at
once. Pieces that touch a border between two bands are joined with the pieces across it: two
pieces of the same class are one region exactly when the horizontal runs of their boundaries
on the shared border line overlap with positive length (the pixels above and below are
4-neighbours). Groups of joined pieces are kept (union-find) until no piece of the group
touches the bottom of the band just read; then their pieces are dissolved with
:func:`shapely.union_all` (exact in integer coordinates) and handed out. A region is
therefore never split along a window or band border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import shape

__all__ = ["BandPolygonizer"]


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


class BandPolygonizer:
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
