"""Reading scenes window by window in pixel space: :class:`SceneReader` (image and label,
padded outside the raster, invalid pixels masked), the raster helpers it rests on
(:func:`open_raster`, :func:`fill_mask`) and :class:`ReaderCache` (a bounded set of open
readers).

Rasters without a CRS (Vaihingen) read the same as georeferenced ones, and memory never
depends on the scene size.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import Scene
from geoidec.data.decoders import LabelDecoder
from geoidec.errors import DataError


def open_raster(path: Path) -> rasterio.DatasetReader:
    """Open a raster or raise a one-line :class:`DataError`."""
    if not os.path.exists(path):
        raise DataError(f"raster not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"cannot read {path} as a raster ({exc}); is it a GeoTIFF?") from None


def fill_mask(band: np.ndarray, value: float) -> np.ndarray:
    """Where ``band`` holds the fill ``value``, compared in the band's own dtype (a float32
    band matches ``-3.4028235e+38`` written in a YAML file; an integer band never matches a
    value it cannot hold)."""
    dtype = band.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not float(value).is_integer() or not info.min <= value <= info.max:
            return np.zeros(band.shape, dtype=bool)
        return band == dtype.type(int(value))
    if np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):
            return band == dtype.type(value)
    return band == value


class SceneReader:
    """Reads windows of a scene's image and label in pixel space, padding outside the raster.

    Outside the raster and where the image is nodata (nodata value, alpha or internal mask,
    NaN/inf, a band at its :attr:`Scene.fill` value) the window is invalid: its label becomes
    255 and its image values 0.
    """

    def __init__(self, scene: Scene, decoder: LabelDecoder | None = None) -> None:
        self.scene = scene
        self.decoder = decoder
        self._image = open_raster(scene.image)
        self.height, self.width = self._image.height, self._image.width
        count = self._image.count
        self.bands = scene.bands or tuple(range(1, count + 1))
        bad = [b for b in self.bands if not 1 <= b <= count]
        if bad:
            raise DataError(f"{scene.image}: has {count} bands, cannot read band(s) {bad}")
        if scene.fill and len(scene.fill) != len(self.bands):
            raise DataError(f"{scene.image}: {len(scene.fill)} fill value(s) given for "
                            f"{len(self.bands)} band(s); give one per band read")
        self._fill = [(i, v) for i, v in enumerate(scene.fill) if v is not None]
        self._all_valid: bool | None = None
        self._label = None
        if scene.label is not None and decoder is not None:
            self._label = open_raster(scene.label)
            self._check_grid()

    def _check_grid(self) -> None:
        img, lab = self._image, self._label
        assert lab is not None
        if (lab.height, lab.width) != (img.height, img.width):
            raise DataError(
                f"label {self.scene.label} is {lab.width}x{lab.height} px but image "
                f"{self.scene.image} is {img.width}x{img.height} px; labels must share the "
                "image's grid (resample the label with nearest neighbour first)"
            )
        if img.crs and lab.crs and img.crs != lab.crs:
            raise DataError(
                f"label {self.scene.label} has CRS {lab.crs} but its image has {img.crs}; "
                "reproject the label onto the image grid (nearest neighbour) first"
            )
        if img.crs and lab.crs and not lab.transform.almost_equals(img.transform, 1e-6):
            raise DataError(
                f"label {self.scene.label} is not aligned with {self.scene.image} "
                f"(transform {tuple(lab.transform)[:6]} vs {tuple(img.transform)[:6]})"
            )
        if lab.count < self.decoder.bands:  # type: ignore[union-attr]
            raise DataError(
                f"label {self.scene.label} has {lab.count} band(s); expected "
                f"{self.decoder.bands} ({'RGB colours' if self.decoder.bands == 3 else 'values'})"  # type: ignore[union-attr]
            )

    @property
    def profile(self) -> dict:
        """CRS, transform, size and nodata of the image."""
        src = self._image
        return {
            "crs": src.crs,
            "transform": src.transform,
            "height": src.height,
            "width": src.width,
            "nodata": src.nodata,
            "dtype": src.dtypes[0],
            "res": src.res,
        }

    @property
    def has_label(self) -> bool:
        return self._label is not None

    def _clip(self, window: Window) -> tuple[Window, tuple[slice, slice]] | None:
        row0, col0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, self.height), min(col0 + w, self.width)
        if r1 <= r0 or c1 <= c0:
            return None
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        return inner, (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))

    def read_image(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Raw image values (C, h, w) float32 (0 where invalid) and the valid mask (h, w)."""
        h, w = int(window.height), int(window.width)
        image = np.zeros((len(self.bands), h, w), dtype=np.float32)
        valid = np.zeros((h, w), dtype=bool)
        clipped = self._clip(window)
        if clipped is None:
            return image, valid
        inner, (rs, cs) = clipped
        data, ok = self.read_raw(inner)
        if ok is None:
            ok = np.ones(data.shape[1:], dtype=bool)
        part = data.astype(np.float32)
        part[:, ~ok] = 0.0
        image[:, rs, cs] = part
        valid[rs, cs] = ok
        return image, valid

    @property
    def all_valid(self) -> bool:
        """No pixel can be invalid: every band read has no nodata value, mask or alpha
        (GDAL's ``all_valid`` mask flag), the dtype is an integer one and no band has a fill
        value."""
        if self._all_valid is None:
            flags = self._image.mask_flag_enums
            self._all_valid = (
                not self._fill
                and np.issubdtype(np.dtype(self._image.dtypes[0]), np.integer)
                and all(flags[b - 1] == [MaskFlags.all_valid] for b in self.bands))
        return self._all_valid

    def read_raw(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """Values (C, h, w) in the raster's own dtype of a ``window`` inside the raster and
        its valid mask (h, w), or ``None`` for the mask when :attr:`all_valid` (no mask is
        read then)."""
        data = self._image.read(self.bands, window=window)
        if self.all_valid:
            return data, None
        masks = self._image.read_masks(self.bands, window=window)
        ok = np.logical_and.reduce(masks > 0, axis=0)
        if np.issubdtype(data.dtype, np.floating):
            ok &= np.isfinite(data).all(axis=0)
        for i, value in self._fill:
            ok &= ~fill_mask(data[i], value)
        return data, ok

    def read_label(self, window: Window) -> np.ndarray:
        """Class indices (h, w) uint8 in dataset order; 255 outside the raster."""
        if self._label is None or self.decoder is None:
            raise DataError(f"scene {self.scene.name} has no label raster")
        h, w = int(window.height), int(window.width)
        label = np.full((h, w), IGNORE_INDEX, dtype=np.uint8)
        clipped = self._clip(window)
        if clipped is None:
            return label
        inner, (rs, cs) = clipped
        raw = self._label.read(list(range(1, self.decoder.bands + 1)), window=inner)
        decoded = self.decoder(raw)
        if self._label.nodata is not None and self.decoder.bands == 1:
            decoded[raw[0] == self._label.nodata] = IGNORE_INDEX
        label[rs, cs] = decoded
        return label

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (C,h,w) float32, label (h,w) uint8 with 255 where the image is invalid, valid."""
        image, valid = self.read_image(window)
        label = self.read_label(window)
        label[~valid] = IGNORE_INDEX
        return image, label, valid

    def close(self) -> None:
        self._image.close()
        if self._label is not None:
            self._label.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReaderCache:
    """At most ``max_open`` scene readers open at once (least recently used closed first), so
    datasets of tens of thousands of images stay under the open-file limit."""

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._open: OrderedDict[int, SceneReader] = OrderedDict()

    def get(self, index: int, scene: Scene, decoder: LabelDecoder | None) -> SceneReader:
        reader = self._open.pop(index, None)
        if reader is None:
            reader = SceneReader(scene, decoder)
            while len(self._open) >= self.max_open:
                self._open.popitem(last=False)[1].close()
        self._open[index] = reader
        return reader

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()
