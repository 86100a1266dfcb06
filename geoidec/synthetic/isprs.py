"""Writing tiles in the folder layout and label colours of the ISPRS Potsdam release."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geoidec.synthetic.layout import (
    _layout,
)
from geoidec.synthetic.render import (
    _dsm,
    _render,
)
from geoidec.synthetic.scene import (
    _CRS,
    _INDEX_COLORS,
    _ORIGIN_X,
    _ORIGIN_Y,
    _Scene,
)

__all__ = ['generate_isprs_sample']

def _write(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine,
    photometric: str | None,
    descriptions: Sequence[str],
) -> None:
    """Write a tiled DEFLATE GeoTIFF atomically (temporary name in the same folder, replaced)."""
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
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def _make_tile(
    seed: int, row: int, col: int, size: int, res: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (class indices HxW, RGBIR 4xHxW uint8, DSM HxW float32) for one tile."""
    rng = np.random.default_rng([seed, row, col])
    sc = _Scene(size, res, rng)
    _layout(sc)
    img = _render(sc)
    x0 = _ORIGIN_X + (col - 10) * size * res
    y0 = _ORIGIN_Y - (row - 2) * size * res
    dsm = _dsm(sc, x0, y0, seed)
    return sc.lab, img, dsm


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
    folders = {
        k: out / k
        for k in ("1_DSM", "2_Ortho_RGB", "3_Ortho_IRRG", "4_Ortho_RGBIR", "5_Labels_all")
    }
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)

    for i, (name, (r, c)) in enumerate(zip(tiles, parsed, strict=True), start=1):
        lab, rgbir, dsm = _make_tile(seed, r, c, size, resolution)
        transform = Affine(
            resolution,
            0.0,
            _ORIGIN_X + (c - 10) * size * resolution,
            0.0,
            -resolution,
            _ORIGIN_Y - (r - 2) * size * resolution,
        )
        stem = f"top_potsdam_{r}_{c}"
        red, green, blue, nir = rgbir
        _write(
            folders["2_Ortho_RGB"] / f"{stem}_RGB.tif",
            rgbir[:3],
            transform=transform,
            photometric="RGB",
            descriptions=("red", "green", "blue"),
        )
        _write(
            folders["3_Ortho_IRRG"] / f"{stem}_IRRG.tif",
            np.stack([nir, red, green]),
            transform=transform,
            photometric="MINISBLACK",
            descriptions=("nir", "red", "green"),
        )
        _write(
            folders["4_Ortho_RGBIR"] / f"{stem}_RGBIR.tif",
            rgbir,
            transform=transform,
            photometric="MINISBLACK",
            descriptions=("red", "green", "blue", "nir"),
        )
        _write(
            folders["1_DSM"] / f"dsm_potsdam_{r:02d}_{c:02d}.tif",
            dsm[None],
            transform=transform,
            photometric=None,
            descriptions=("height",),
        )
        _write(
            folders["5_Labels_all"] / f"{stem}_label.tif",
            _colour_labels(lab),
            transform=transform,
            photometric="RGB",
            descriptions=("red", "green", "blue"),
        )
        if progress is not None:
            progress(f"synthetic Potsdam tile {name} written ({i}/{len(tiles)})")

    readme = (
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
    tmp = out / f".README.{os.getpid()}.tmp"
    tmp.write_text(readme, encoding="utf-8")
    os.replace(tmp, out / "README.txt")
    return out
