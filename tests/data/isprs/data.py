#!/usr/bin/env python3
"""Tiny fake ISPRS Potsdam and Vaihingen datasets in the real release layouts.

Tests build these on the fly in ``tmp_path`` (no binary data is committed)::

    root = make_fake_potsdam(tmp_path)    # tmp_path / "potsdam"
    root = make_fake_vaihingen(tmp_path)  # tmp_path / "vaihingen"

Running ``python tests/data/isprs/data.py [OUT]`` writes both next to this script (or under
``OUT``) for a look in a GIS; do not commit the result.

Labels have simple known geometry so tests can check class counts by hand. Class indices
follow geoidec: 0 = clutter/background, 1 = impervious surfaces, 2 = building, 3 = low
vegetation, 4 = tree, 5 = car, 255 = ignore (black pixels of the "noBoundary" labels).

Potsdam (``size`` x ``size`` px, 5 cm, EPSG:32633; tiles 2_10, 2_11 train and 2_13 test):
quadrants impervious (top-left), building (top-right), low vegetation (bottom-left), tree
(bottom-right), with a ``size//8`` square of car inside the impervious quadrant and one of
clutter inside the low-vegetation quadrant; the whole pattern is rotated by 90 degrees per
tile (index in :data:`POTSDAM_TILES`), so every tile has the same class counts. For
``size=64``: impervious 960, building 1024, low vegetation 960, tree 1024, car 64, clutter 64.

Vaihingen (no CRS, no geotransform; areas 1, 3 train and 2 test; shapes differ per area, see
:func:`vaihingen_shape`): four vertical stripes impervious | building | low vegetation | tree
(boundaries at ``w*k//4``), a ``size//8`` car square at the top-left corner (inside the
impervious stripe) and a ``size//8`` clutter square just below the top of the building
stripe. Area 1 also has its middle row black (ignore, 255), like the boundary-eroded labels.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

__all__ = [
    "CLASS_COLOURS",
    "POTSDAM_TEST",
    "POTSDAM_TILES",
    "POTSDAM_TRAIN",
    "VAIHINGEN_AREAS",
    "VAIHINGEN_TEST",
    "VAIHINGEN_TRAIN",
    "colourise",
    "expected_label_indices",
    "make_fake_potsdam",
    "make_fake_vaihingen",
    "vaihingen_shape",
]

CLUTTER, IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, IGNORE = 0, 1, 2, 3, 4, 5, 255

#: Class index -> RGB label colour (ISPRS palette; 255/ignore is black).
CLASS_COLOURS: dict[int, tuple[int, int, int]] = {
    CLUTTER: (255, 0, 0),
    IMPERVIOUS: (255, 255, 255),
    BUILDING: (0, 0, 255),
    LOW_VEG: (0, 255, 255),
    TREE: (0, 255, 0),
    CAR: (255, 255, 0),
    IGNORE: (0, 0, 0),
}

POTSDAM_TRAIN = ("2_10", "2_11")
POTSDAM_TEST = ("2_13",)
POTSDAM_TILES = POTSDAM_TRAIN + POTSDAM_TEST
POTSDAM_RESOLUTION = 0.05
VAIHINGEN_TRAIN = (1, 3)
VAIHINGEN_TEST = (2,)
VAIHINGEN_AREAS = (1, 2, 3)

# Mean (R, G, B, IR) per class for the fake images, so a model can learn something.
_MEAN_RGBI = {
    CLUTTER: (200, 90, 40, 120),
    IMPERVIOUS: (120, 120, 124, 110),
    BUILDING: (170, 80, 60, 150),
    LOW_VEG: (100, 140, 70, 210),
    TREE: (50, 90, 45, 180),
    CAR: (210, 210, 215, 190),
    IGNORE: (120, 120, 120, 120),
}
_HEIGHT = {CLUTTER: 1.0, IMPERVIOUS: 0.0, BUILDING: 12.0, LOW_VEG: 0.1, TREE: 8.0, CAR: 1.5}


def _check_size(size: int) -> None:
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and at least 16, got {size}")


def vaihingen_shape(area: int, size: int = 64) -> tuple[int, int]:
    """(height, width) of fake Vaihingen ``area`` (real areas differ in shape too)."""
    return {1: (size, size + 16), 2: (size, size), 3: (size + 8, size)}[area]


def _potsdam_indices(tile: str, size: int) -> np.ndarray:
    h = size // 2
    e = size // 8
    lab = np.empty((size, size), dtype=np.uint8)
    lab[:h, :h] = IMPERVIOUS
    lab[:h, h:] = BUILDING
    lab[h:, :h] = LOW_VEG
    lab[h:, h:] = TREE
    lab[e : 2 * e, e : 2 * e] = CAR
    lab[h + e : h + 2 * e, e : 2 * e] = CLUTTER
    return np.ascontiguousarray(np.rot90(lab, k=POTSDAM_TILES.index(tile)))


def _vaihingen_indices(area: int, size: int) -> np.ndarray:
    hgt, wid = vaihingen_shape(area, size)
    e = size // 8
    lab = np.empty((hgt, wid), dtype=np.uint8)
    bounds = [wid * k // 4 for k in range(5)]
    stripes = (IMPERVIOUS, BUILDING, LOW_VEG, TREE)
    for cls, a, b in zip(stripes, bounds[:-1], bounds[1:], strict=True):
        lab[:, a:b] = cls
    lab[:e, :e] = CAR
    lab[e : 2 * e, bounds[1] : bounds[1] + e] = CLUTTER
    if area == 1:
        lab[hgt // 2, :] = IGNORE
    return lab


def expected_label_indices(
    dataset: Literal["potsdam", "vaihingen"], tile: str | int, size: int = 64
) -> np.ndarray:
    """The class-index array (uint8, 255 = ignore) behind a fake label file.

    Args:
        dataset: ``"potsdam"`` or ``"vaihingen"``.
        tile: Potsdam tile name (``"2_10"``) or Vaihingen area number (``1``).
        size: The ``size`` the fake dataset was made with.
    """
    _check_size(size)
    if dataset == "potsdam":
        if str(tile) not in POTSDAM_TILES:
            raise ValueError(f"fake Potsdam tiles are {POTSDAM_TILES}, got {tile!r}")
        return _potsdam_indices(str(tile), size)
    if dataset == "vaihingen":
        if int(tile) not in VAIHINGEN_AREAS:
            raise ValueError(f"fake Vaihingen areas are {VAIHINGEN_AREAS}, got {tile!r}")
        return _vaihingen_indices(int(tile), size)
    raise ValueError(f"dataset must be 'potsdam' or 'vaihingen', got {dataset!r}")


def colourise(indices: np.ndarray) -> np.ndarray:
    """Class indices (H, W) -> ISPRS colour label (3, H, W) uint8."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for cls, rgb in CLASS_COLOURS.items():
        lut[cls] = rgb
    return lut[indices].transpose(2, 0, 1).copy()


def _image(indices: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, G, B, IR) uint8 image (4, H, W) and float32 DSM (H, W) correlated with the classes."""
    rng = np.random.default_rng(seed)
    lut = np.zeros((256, 4), dtype=np.float32)
    hlut = np.zeros(256, dtype=np.float32)
    for cls, rgbi in _MEAN_RGBI.items():
        lut[cls] = rgbi
        hlut[cls] = _HEIGHT.get(cls, 0.0)
    img = lut[indices] + rng.normal(0.0, 12.0, size=(*indices.shape, 4))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()
    dsm = (35.0 + hlut[indices] + rng.normal(0.0, 0.05, size=indices.shape)).astype(np.float32)
    return img, dsm


def _write(path: Path, data: np.ndarray, **geo: object) -> None:
    """Write a small GeoTIFF; without ``crs``/``transform`` it is a pixel-space raster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "compress": "deflate",
        **geo,
    }
    with warnings.catch_warnings():
        # Vaihingen tiles are deliberately not georeferenced, like the real release.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)


def make_fake_potsdam(root: Path, size: int = 64) -> Path:
    """Write a fake Potsdam release under ``root / "potsdam"`` and return that folder.

    Tiles 2_10, 2_11 (train) and 2_13 (test), ``size`` x ``size`` px at 5 cm in EPSG:32633,
    neighbouring names adjacent on the ground, in the five real folders: ``1_DSM``,
    ``2_Ortho_RGB``, ``3_Ortho_IRRG``, ``4_Ortho_RGBIR`` and ``5_Labels_all``.
    """
    _check_size(size)
    out = Path(root) / "potsdam"
    crs = CRS.from_epsg(32633)
    res = POTSDAM_RESOLUTION
    for k, tile in enumerate(POTSDAM_TILES):
        r, c = (int(v) for v in tile.split("_"))
        x0, y0 = 366000.0 + (c - 10) * size * res, 5808000.0 - (r - 2) * size * res
        transform = Affine(res, 0.0, x0, 0.0, -res, y0)
        geo = {"crs": crs, "transform": transform}
        lab = _potsdam_indices(tile, size)
        img, dsm = _image(lab, seed=100 + k)
        red, green, blue, nir = img
        stem = f"top_potsdam_{r}_{c}"
        _write(out / "2_Ortho_RGB" / f"{stem}_RGB.tif", img[:3], **geo)
        _write(out / "3_Ortho_IRRG" / f"{stem}_IRRG.tif", np.stack([nir, red, green]), **geo)
        _write(out / "4_Ortho_RGBIR" / f"{stem}_RGBIR.tif", img, **geo)
        _write(out / "1_DSM" / f"dsm_potsdam_{r:02d}_{c:02d}.tif", dsm[None], **geo)
        _write(out / "5_Labels_all" / f"{stem}_label.tif", colourise(lab), **geo)
    return out


def make_fake_vaihingen(root: Path, size: int = 64) -> Path:
    """Write a fake Vaihingen release under ``root / "vaihingen"`` and return that folder.

    Areas 1, 3 (train) and 2 (test): ``top/top_mosaic_09cm_area{N}.tif`` (IR, R, G uint8),
    ``gts_for_participants/top_mosaic_09cm_area{N}.tif`` (colour labels, black ignore row in
    area 1) and ``dsm/dsm_09cm_matching_area{N}.tif`` (float32); no CRS and no geotransform,
    like the real files.
    """
    _check_size(size)
    out = Path(root) / "vaihingen"
    for area in VAIHINGEN_AREAS:
        lab = _vaihingen_indices(area, size)
        img, dsm = _image(lab, seed=200 + area)
        red, green, _, nir = img
        name = f"top_mosaic_09cm_area{area}.tif"
        _write(out / "top" / name, np.stack([nir, red, green]))
        _write(out / "gts_for_participants" / name, colourise(lab))
        _write(out / "dsm" / f"dsm_09cm_matching_area{area}.tif", dsm[None])
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for made in (make_fake_potsdam(target), make_fake_vaihingen(target)):
        print(f"wrote {made} (test data: do not commit)")
