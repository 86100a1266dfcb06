"""Where objects go: the tile layout, and stamping missing classes so every class appears."""

from __future__ import annotations

import numpy as np

from geoidec.synthetic.objects import (
    _paint_car,
    _paint_clutter,
    _paint_parking,
    _paint_tree,
)
from geoidec.synthetic.scene import (
    _BUILDING,
    _CAR,
    _CAR_COLOURS,
    _CLUTTER,
    _CLUTTER_COLOURS,
    _GRASS,
    _IMPERVIOUS,
    _LOW_VEG,
    _M_ASPHALT,
    _M_CAR,
    _M_CLUTTER,
    _M_GRASS,
    _M_MARKING,
    _M_PAVING,
    _M_ROOF_FLAT,
    _M_SIDEWALK,
    _M_TREE,
    _PAVING,
    _ROOF_COLOURS,
    _TREE,
    _TREE_COLOUR,
    _Scene,
)
from geoidec.synthetic.streets import (
    _choose_roads,
    _intervals,
    _paint_building,
    _paint_flat,
    _paint_roads,
    _Road,
    _split_parcels,
)


def _count_in(sc: _Scene, box: tuple[float, float, float, float]) -> np.ndarray:
    """Pixel count per class inside a box (m), clipped to the tile."""
    r0, r1 = sc.span(box[1], box[3])
    c0, c1 = sc.span(box[0], box[2])
    return np.bincount(sc.lab[r0:r1, c0:c1].ravel(), minlength=6)


def _layout(sc: _Scene) -> None:
    """Paint roads, parcels, cars, clutter and trees until the class targets are roughly met."""
    rng, w, n_pix = sc.rng, sc.extent, sc.size * sc.size
    margin = 12.0
    roads = _choose_roads(sc, margin)
    _paint_roads(sc, roads, margin)
    parcels = _parcels(sc, roads, margin)
    car_target = float(rng.uniform(0.012, 0.022)) * n_pix
    clutter_target = float(rng.uniform(0.035, 0.055)) * n_pix
    tree_target = float(rng.uniform(0.12, 0.16)) * n_pix
    building_target = float(rng.uniform(0.23, 0.29)) * n_pix
    _build_parcels(sc, parcels, building_target)
    local_roads = [r for r in roads if -r.half < r.centre < w + r.half]
    _park_cars(sc, local_roads, car_target)
    _scatter_clutter(sc, clutter_target)
    _plant_trees(sc, local_roads, tree_target)
    _ensure_all_classes(sc)


def _parcels(sc: _Scene, roads: list[_Road], margin: float
             ) -> list[tuple[float, float, float, float]]:
    """Parcels (boxes, m) of the blocks between roads, the blocks extended past the tile edge
    so parcels are not tile-aligned."""
    rng, lo, hi = sc.rng, -margin, sc.extent + margin
    xs = _intervals([(r.centre - r.half, r.centre + r.half) for r in roads if r.vertical], lo, hi)
    ys = _intervals(
        [(r.centre - r.half, r.centre + r.half) for r in roads if not r.vertical], lo, hi
    )
    parcels: list[tuple[float, float, float, float]] = []
    for ax0, ax1 in xs:
        for ay0, ay1 in ys:
            if ax1 - ax0 > 3.0 and ay1 - ay0 > 3.0:
                _split_parcels(rng, (ax0, ay0, ax1, ay1), float(rng.uniform(15.0, 26.0)), parcels)
    return parcels


def _build_parcels(sc: _Scene, parcels: list[tuple[float, float, float, float]],
                   building_target: float) -> None:
    """Parcels in random order: a building until ``building_target`` pixels are built, some
    parking while impervious surfaces are under 27 % of the tile, else a lawn or park."""
    rng, n_pix = sc.rng, sc.size * sc.size
    building_px = 0
    impervious_px = int(np.count_nonzero(sc.lab == _IMPERVIOUS))
    for k in rng.permutation(len(parcels)):
        parcel = parcels[int(k)]
        before = _count_in(sc, parcel)
        if building_px < building_target and rng.random() < 0.88:
            _paint_building(sc, parcel)
        elif impervious_px < 0.27 * n_pix and rng.random() < 0.4:
            _paint_parking(sc, parcel, float(rng.uniform(0.35, 0.7)))
        # else: lawn / park, trees come later
        after = _count_in(sc, parcel)
        building_px += int(after[_BUILDING] - before[_BUILDING])
        impervious_px += int(after[_IMPERVIOUS] - before[_IMPERVIOUS])


def _park_cars(sc: _Scene, local_roads: list[_Road], car_target: float) -> None:
    """Cars parked along the kerbs and a few driving in the lanes, up to ``car_target`` px."""
    rng, w = sc.rng, sc.extent
    car_px = int(np.count_nonzero(sc.lab == _CAR))
    attempts = 0
    while (
        car_px < car_target
        and local_roads
        and attempts < 50 + int(20 * car_target * sc.res**2 / 9.0)
    ):
        attempts += 1
        road = local_roads[int(rng.integers(len(local_roads)))]
        side = float(rng.choice([-1.0, 1.0]))
        offset = road.carriage / 2 - (1.1 if rng.random() < 0.8 else float(rng.uniform(1.4, 2.0)))
        across = road.centre + side * max(0.0, offset)
        along = float(rng.uniform(-2.0, w + 2.0))
        cx, cy = (across, along) if road.vertical else (along, across)
        car_px += _paint_car(sc, cx, cy, not road.vertical, allowed=(_M_ASPHALT, _M_MARKING))


def _scatter_clutter(sc: _Scene, clutter_target: float) -> None:
    """Clutter on lawns, sidewalks and paving, up to ``clutter_target`` px."""
    rng, w = sc.rng, sc.extent
    clutter_px = 0
    attempts = 0
    while clutter_px < clutter_target and attempts < 300 + int(
        30 * clutter_target * sc.res**2 / 3.0
    ):
        attempts += 1
        cx, cy = rng.uniform(-1.0, w + 1.0, size=2)
        clutter_px += _paint_clutter(sc, float(cx), float(cy))


def _plant_trees(sc: _Scene, local_roads: list[_Road], tree_target: float) -> None:
    """Trees, some along the sidewalks and the rest on lawns, up to ``tree_target`` px."""
    rng, w = sc.rng, sc.extent
    tree_px = 0
    attempts = 0
    while tree_px < tree_target and attempts < 200 + int(20 * tree_target * sc.res**2 / 28.0):
        attempts += 1
        r = float(rng.uniform(1.6, 4.6))
        if rng.random() < 0.3 and local_roads:
            road = local_roads[int(rng.integers(len(local_roads)))]
            across = road.centre + float(rng.choice([-1.0, 1.0])) * (road.half - 0.3)
            along = float(rng.uniform(-2.0, w + 2.0))
            cx, cy = (across, along) if road.vertical else (along, across)
            r = min(r, 3.2)
        else:
            cx, cy = (float(v) for v in rng.uniform(-2.0, w + 2.0, size=2))
        tree_px += _paint_tree(sc, cx, cy, r)


def _random_pixel_of(sc: _Scene, mask: np.ndarray) -> tuple[float, float] | None:
    """Centre (m) of a random pixel where ``mask`` holds, preferring pixels away from the edge."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    k = int(idx[int(sc.rng.integers(idx.size))])
    r, c = divmod(k, sc.size)
    return (c + 0.5) * sc.res, (r + 0.5) * sc.res


def _stamp(sc: _Scene, cls: int) -> None:
    """Last resort: a small square of ``cls`` on pixels of the currently most common class.

    Only pixels of the dominant class are overwritten, so no other class can disappear.
    """
    counts = np.bincount(sc.lab.ravel(), minlength=6)
    dominant = int(np.argmax(counts))
    where = _random_pixel_of(sc, sc.lab == dominant)
    if where is None:
        return
    half = max(1.5 * sc.res, min(1.0, sc.extent / 16))
    win = sc.window(where[0] - half, where[1] - half, where[0] + half, where[1] + half)
    if win is None:
        return
    rows, cols, _, _ = win
    mask = sc.lab[rows, cols] == dominant
    rng = sc.rng
    look = {
        _CLUTTER: (_M_CLUTTER, _CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))], 1.5),
        _IMPERVIOUS: (_M_PAVING, _PAVING, 0.0),
        _BUILDING: (_M_ROOF_FLAT, _ROOF_COLOURS[int(rng.integers(len(_ROOF_COLOURS)))], 8.0),
        _LOW_VEG: (_M_GRASS, _GRASS, 0.0),
        _TREE: (_M_TREE, _TREE_COLOUR, 6.0),
        _CAR: (_M_CAR, _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], 1.5),
    }
    mat, colour, height = look[cls]
    sc.paint(rows, cols, mask, cls, mat, colour, height)


def _ensure_all_classes(sc: _Scene) -> None:
    """Guarantee every class appears (small tiles can miss the rare ones).

    First tries to place a natural object where it belongs (a car on asphalt, a tree or
    clutter on a lawn, a small building on free ground); if that keeps failing, stamps a
    small patch of the class over the most common class.
    """
    rng = sc.rng
    inner = np.zeros_like(sc.lab, dtype=bool)
    b = max(1, sc.size // 10)
    inner[b:-b, b:-b] = True
    for cls in (_BUILDING, _CAR, _CLUTTER, _TREE, _LOW_VEG, _IMPERVIOUS):
        for _ in range(30):
            if np.count_nonzero(sc.lab == cls):
                break
            if cls == _CAR:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_ASPHALT))
                if where:
                    _paint_car(
                        sc, *where, bool(rng.random() < 0.5), allowed=(_M_ASPHALT, _M_MARKING)
                    )
            elif cls == _CLUTTER:
                where = _random_pixel_of(
                    sc, inner & np.isin(sc.mat, (_M_GRASS, _M_SIDEWALK, _M_PAVING))
                )
                if where:
                    _paint_clutter(sc, *where)
            elif cls == _TREE:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_GRASS))
                if where:
                    _paint_tree(sc, *where, float(rng.uniform(1.5, 2.5)))
            elif cls == _BUILDING:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_GRASS))
                if where:
                    half = float(rng.uniform(2.5, 4.0))
                    box = (where[0] - half, where[1] - half, where[0] + half, where[1] + half)
                    win = sc.window(*box)
                    if win is not None and (sc.mat[win[0], win[1]] == _M_GRASS).all():
                        k = int(rng.integers(len(_ROOF_COLOURS)))
                        _paint_flat(sc, box, _ROOF_COLOURS[k], float(rng.uniform(6.0, 12.0)))
            else:
                break
    for cls in (_BUILDING, _CAR, _CLUTTER, _TREE, _LOW_VEG, _IMPERVIOUS):
        if not np.count_nonzero(sc.lab == cls):
            _stamp(sc, cls)

