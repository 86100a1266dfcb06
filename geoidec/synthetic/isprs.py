"""Writing tiles in the folder layout and label colours of the ISPRS Potsdam release."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geoidec.data.isprs import CLASSES, CLUTTER
from geoidec.files import atomic_write, write_text
from geoidec.synthetic.layout import (
    _layout,
)
from geoidec.synthetic.render import (
    _dsm,
    _render,
)
from geoidec.synthetic.scene import (
    _CRS,
    _ORIGIN_X,
    _ORIGIN_Y,
    _Scene,
)

__all__ = ["generate_isprs_sample"]

#: The folders of the Potsdam release a sample fills.
FOLDERS = ("1_DSM", "2_Ortho_RGB", "3_Ortho_IRRG", "4_Ortho_RGBIR", "5_Labels_all")

#: Label colour of each class index of :mod:`geoidec.synthetic.scene` (0 clutter, then the
#: evaluation order): the ISPRS reader's colours (:mod:`geoidec.data.isprs`).
_INDEX_COLORS = np.array([CLUTTER.color, *(c.color for c in CLASSES)], dtype=np.uint8)


def _write(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine,
    photometric: str | None,
    descriptions: Sequence[str],
) -> None:
    """Write a tiled DEFLATE GeoTIFF atomically (:func:`geoidec.files.atomic_write`)."""
    count, height, width = data.shape
    profile: dict = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": _CRS,
        "transform": transform,
        "compress": "deflate",
        "predictor": 2 if data.dtype == np.uint8 else 3,
        "interleave": "pixel",
    }
    if min(width, height) >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if photometric:
        profile["photometric"] = photometric

    def write(tmp: Path) -> None:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)

    atomic_write(path, write, suffix=".tif")


def _parse_tile(name: str) -> tuple[int, int]:
    """``"2_10"`` -> ``(2, 10)``."""
    try:
        r, c = (int(p) for p in name.split("_"))
    except ValueError as err:
        raise ValueError(f"tile names look like '2_10' (row_col), got {name!r}") from err
    return r, c


def _colour_labels(lab: np.ndarray) -> np.ndarray:
    """Class indices -> ``(3, H, W)`` ISPRS colour label."""
    return _INDEX_COLORS[lab].transpose(2, 0, 1).copy()


def _tile_origin(row: int, col: int, size: int, res: float) -> tuple[float, float]:
    """Easting of the west edge and northing of the north edge of tile ``row_col`` (tiles
    whose names are neighbours are neighbours on the ground)."""
    return _ORIGIN_X + (col - 10) * size * res, _ORIGIN_Y - (row - 2) * size * res


def _make_tile(
    seed: int, row: int, col: int, size: int, res: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (class indices HxW, RGBIR 4xHxW uint8, DSM HxW float32) for one tile."""
    rng = np.random.default_rng([seed, row, col])
    sc = _Scene(size, res, rng)
    _layout(sc)
    img = _render(sc)
    x0, y0 = _tile_origin(row, col, size, res)
    dsm = _dsm(sc, x0, y0, seed)
    return sc.lab, img, dsm


def _write_tile(out: Path, seed: int, row: int, col: int, size: int, res: float) -> None:
    """Generate tile ``row_col`` and write its five rasters into the folders of ``out``."""
    lab, rgbir, dsm = _make_tile(seed, row, col, size, res)
    x0, y0 = _tile_origin(row, col, size, res)
    transform = Affine(res, 0.0, x0, 0.0, -res, y0)
    stem = f"top_potsdam_{row}_{col}"
    red, green, blue, nir = rgbir
    rasters = (
        ("2_Ortho_RGB", f"{stem}_RGB.tif", rgbir[:3], "RGB", ("red", "green", "blue")),
        ("3_Ortho_IRRG", f"{stem}_IRRG.tif", np.stack([nir, red, green]), "MINISBLACK",
         ("nir", "red", "green")),
        ("4_Ortho_RGBIR", f"{stem}_RGBIR.tif", rgbir, "MINISBLACK",
         ("red", "green", "blue", "nir")),
        ("1_DSM", f"dsm_potsdam_{row:02d}_{col:02d}.tif", dsm[None], None, ("height",)),
        ("5_Labels_all", f"{stem}_label.tif", _colour_labels(lab), "RGB",
         ("red", "green", "blue")),
    )
    for folder, name, data, photometric, descriptions in rasters:
        _write(out / folder / name, data, transform=transform, photometric=photometric,
               descriptions=descriptions)


def _readme(seed: int, size: int, resolution: float, train_tiles: Sequence[str],
            test_tiles: Sequence[str]) -> str:
    """The sample's README.txt: what it is, its settings, folders and label colours."""
    return (
        "Synthetic ISPRS Potsdam-like sample, written by\n"
        "geoidec.synthetic.generate_isprs_sample. It is NOT real data: the scenes are\n"
        "procedural (roads, buildings, lawns, trees, cars, clutter), but the files follow the\n"
        "layout, naming, band order and label colours of the real Potsdam release.\n\n"
        f"seed: {seed}\n"
        f"tile size: {size} x {size} px\n"
        f"resolution: {resolution} m/px (EPSG:32633, north-up)\n"
        f"train tiles: {', '.join(train_tiles)}\n"
        f"test tiles: {', '.join(test_tiles)}\n\n"
        "Folders: 1_DSM (float32 heights, m), 2_Ortho_RGB (R,G,B), 3_Ortho_IRRG (IR,R,G),\n"
        "4_Ortho_RGBIR (R,G,B,IR), 5_Labels_all (RGB colour labels).\n"
        "Label colours: impervious surfaces (255,255,255), building (0,0,255), low vegetation\n"
        "(0,255,255), tree (0,255,0), car (255,255,0), clutter/background (255,0,0).\n"
    )


def generate_isprs_sample(
    out: Path,
    *,
    seed: int = 0,
    size: int = 512,
    resolution: float = 0.05,
    train_tiles: Sequence[str] = ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12"),
    test_tiles: Sequence[str] = ("2_13", "2_14"),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a synthetic ISPRS-Potsdam-like sample in the real release's folder layout.

    Args:
        out: Root folder to create (``2_Ortho_RGB``, ``3_Ortho_IRRG``, ``4_Ortho_RGBIR``,
            ``1_DSM``, ``5_Labels_all`` and a ``README.txt`` are written under it).
        seed: Scene seed; the same seed and arguments give identical rasters.
        size: Tile side in pixels (square tiles).
        resolution: Ground sampling distance in metres per pixel.
        train_tiles: Tile names ``"row_col"`` meant for training (only recorded in README).
        test_tiles: Tile names meant for testing (only recorded in README).
        progress: Optional callback receiving a short message per tile written.

    Returns:
        ``out``.
    """
    out = Path(out)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    tiles = list(dict.fromkeys([*train_tiles, *test_tiles]))
    parsed = [_parse_tile(t) for t in tiles]
    for folder in FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i, (name, (r, c)) in enumerate(zip(tiles, parsed, strict=True), start=1):
        _write_tile(out, seed, r, c, size, resolution)
        if progress is not None:
            progress(f"synthetic Potsdam tile {name} written ({i}/{len(tiles)})")
    write_text(out / "README.txt", _readme(seed, size, resolution, train_tiles, test_tiles))
    return out
