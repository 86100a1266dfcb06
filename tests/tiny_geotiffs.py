"""Tiny value-coded GeoTIFF datasets (a dataset YAML and its rasters) for the reliability,
DDP and resume tests; each test can spoil one file to try a hostile input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine

CLASSES = ("forest", "water", "field")
VALUES = (1, 2, 3)
CRS = "EPSG:32633"
RES = 0.5


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = CRS, x0: float = 500000.0,
              y0: float = 5800000.0, res: float = RES, nodata: float | None = None) -> Path:
    """A GeoTIFF of ``data`` (bands, h, w) in ``crs`` with square ``res`` pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2], "dtype": str(data.dtype),
               "transform": Affine(res, 0.0, x0, 0.0, -res, y0)}
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def write_raster(path: Path, data: np.ndarray, *, crs: str | None = CRS,
                 transform: Affine | None = None, mask: np.ndarray | None = None,
                 **profile: object) -> Path:
    """A GeoTIFF of ``data`` (C, H, W) (the identity transform without a CRS); ``mask``
    (H, W) bool becomes an internal mask; ``profile`` adds creation options (tiling...)."""
    c, h, w = data.shape
    args = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": data.dtype,
            "crs": crs, "transform": transform if crs else Affine.identity()}
    args.update(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **args) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


def labels(size: int, seed: int) -> np.ndarray:
    """(1, size, size) uint8 class values 1..3 in three shifted vertical bands."""
    rng = np.random.default_rng(seed)
    cut1 = int(rng.integers(size // 4, size // 2))
    cut2 = int(rng.integers(size // 2 + 4, 3 * size // 4 + 4))
    out = np.full((size, size), VALUES[0], dtype=np.uint8)
    out[:, cut1:cut2] = VALUES[1]
    out[:, cut2:] = VALUES[2]
    return out[None]


def image(label: np.ndarray, seed: int) -> np.ndarray:
    """(3, h, w) uint8 imagery whose colour depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    colours = {1: (40, 120, 40), 2: (30, 60, 160), 3: (170, 160, 70)}
    out = np.zeros((3, *label.shape[1:]), dtype=np.float32)
    for value, colour in colours.items():
        for band, level in enumerate(colour):
            out[band][label[0] == value] = level
    out += rng.normal(0, 12, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_dataset(root: Path, *, train: int = 2, test: int = 2, size: int = 48,
                 ignore_values: tuple[float, ...] = (), res: float = RES,
                 crs: str | None = CRS, values: tuple[int, ...] = VALUES) -> Path:
    """``root/dataset.yaml`` over ``train`` + ``test`` scenes ``train_i``/``test_i``
    (``images/NAME.tif``, ``labels/NAME.tif``), side by side on the ground; the label
    rasters hold ``values`` (one per class of :data:`CLASSES`) instead of 1, 2, 3."""
    root = Path(root)
    names = {"train": [f"train_{i}" for i in range(train)],
             "test": [f"test_{i}" for i in range(test)]}
    for k, name in enumerate(names["train"] + names["test"]):
        lab = labels(size, seed=k)
        x0 = 500000.0 + k * size * res
        write_tif(root / "images" / f"{name}.tif", image(lab, seed=100 + k), x0=x0, res=res,
                  crs=crs)
        if values != VALUES:
            coded = np.asarray((0, *values))[lab]
            lab = coded.astype(np.uint8 if coded.min() >= 0 and coded.max() <= 255
                               else np.int32)
        write_tif(root / "labels" / f"{name}.tif", lab, x0=x0, res=res, crs=crs)
    doc = {
        "name": "tiny",
        "images": {s: [f"images/{n}.tif" for n in ns] for s, ns in names.items()},
        "labels": {s: [f"labels/{n}.tif" for n in ns] for s, ns in names.items()},
        "classes": [{"name": n, "value": v} for n, v in zip(CLASSES, values, strict=True)],
    }
    if ignore_values:
        doc["ignore_values"] = list(ignore_values)
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


#: Where :func:`filled_image` fills band 2 with 0: rows 0..15, columns 0..23 (384 pixels).
FILL_BLOCK = (slice(0, 16), slice(0, 24))


def filled_image(label: np.ndarray, seed: int) -> np.ndarray:
    """(3, h, w) uint16 imagery (the colours of :func:`image` x 10 + 500, so 500..3050) whose
    band 2 is 0 over :data:`FILL_BLOCK`: an undeclared fill value."""
    out = image(label, seed).astype(np.uint16) * 10 + 500
    out[1][FILL_BLOCK] = 0
    return out


def make_fill_dataset(root: Path, *, train: int = 2, test: int = 1, size: int = 48,
                      band_names: tuple[str, ...] = ()) -> Path:
    """Like :func:`make_dataset`, with :func:`filled_image` uint16 imagery in every scene."""
    path = make_dataset(root, train=train, test=test, size=size)
    doc = yaml.safe_load(path.read_text())
    for k, name in enumerate([Path(p).stem for s in ("train", "test") for p in doc["images"][s]]):
        x0 = 500000.0 + k * size * RES
        lab = labels(size, seed=k)
        write_tif(root / "images" / f"{name}.tif", filled_image(lab, seed=100 + k), x0=x0)
    if band_names:
        doc["band_names"] = list(band_names)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
