"""Dataset description shared by every reader: classes, scenes, label decoding, window reads.

Every dataset (ISPRS Potsdam/Vaihingen, a user's GeoTIFFs, ...) becomes a :class:`DatasetSpec`:
a list of classes and, per split, a list of :class:`Scene` (an image raster plus an optional
co-registered label raster). Scenes are read window by window in pixel space with
:class:`SceneReader`, so rasters without a CRS (Vaihingen) work the same as georeferenced ones,
and memory never depends on the scene size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.errors import DataError


@dataclass(frozen=True)
class ClassInfo:
    """A class as users see it: a name, an RGB display colour and, optionally, its code.

    ``code`` is the pixel value of the class in predicted class maps (a user's own label
    code, e.g. forest = 5, from a dataset YAML); ``None`` means the model's output index is
    the code (ISPRS, VOC, ADE20K).
    """

    name: str
    color: tuple[int, int, int]
    code: int | None = None

    def hex(self) -> str:
        """Colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


def parse_color(value: str | Sequence[int], where: str) -> tuple[int, int, int]:
    """``"#1b7837"`` or ``[27, 120, 55]`` to an RGB tuple."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
    elif len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise DataError(f"{where}: colour {value!r} is not '#rrggbb' or [r, g, b]")


class LabelDecoder(Protocol):
    """Turns the raw label bands of a window into class indices (0 background, 255 ignore)."""

    @property
    def bands(self) -> int:
        """Number of label bands read (1 for value rasters, 3 for RGB colour labels)."""
        ...

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` (bands, h, w) -> uint8 (h, w)."""
        ...


@dataclass(frozen=True)
class ValueDecoder:
    """Label rasters holding class values: listed values map to 1..K, ignore values to 255,
    and every other value to background (0)."""

    values: tuple[float, ...]
    ignore_values: tuple[float, ...] = ()
    bands: int = 1

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        band = raw[0]
        out = np.full(band.shape, BACKGROUND, dtype=np.uint8)
        for index, value in enumerate(self.values, start=1):
            out[band == value] = index
        for value in self.ignore_values:
            out[band == value] = IGNORE_INDEX
        if np.issubdtype(band.dtype, np.floating):
            out[~np.isfinite(band)] = IGNORE_INDEX
        return out


@dataclass(frozen=True)
class ColorDecoder:
    """RGB colour labels (ISPRS): each listed colour is a class index; any other colour
    (the black boundary of the "noBoundary" labels, stray colours) becomes 255 (ignore)."""

    colors: Mapping[tuple[int, int, int], int]
    bands: int = 3

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        rgb = raw[:3].astype(np.uint32)
        packed = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
        out = np.full(packed.shape, IGNORE_INDEX, dtype=np.uint8)
        for (r, g, b), index in self.colors.items():
            out[packed == ((r << 16) | (g << 8) | b)] = index
        return out


@dataclass(frozen=True)
class Scene:
    """One image raster (selected bands) and its optional label raster of the same grid."""

    name: str
    image: Path
    label: Path | None = None
    #: 1-based band indexes to read; None reads all bands.
    bands: tuple[int, ...] | None = None
    #: Per-band fill value, aligned with the bands read (None: the band has none); a pixel
    #: where any band holds its fill value is nodata. Empty: no fill values. Declared with
    #: ``fill_values`` in a dataset YAML, or detected with the normalisation statistics
    #: (:func:`geoidec.data.normalization.compute_normalization`).
    fill: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the engine needs to know about a dataset."""

    name: str
    classes: tuple[ClassInfo, ...]
    decoder: LabelDecoder
    splits: Mapping[str, tuple[Scene, ...]]
    background: ClassInfo = ClassInfo("background", (0, 0, 0))
    #: Whether background is an evaluated class (VOC) or ignored in evaluation (ISPRS, ADE).
    eval_background: bool = False
    #: Band names of the image (after band selection), for checkpoints and error messages.
    band_names: tuple[str, ...] = ()
    #: Indexes (0-based, after selection) of the red, green and blue bands, if any.
    rgb_bands: tuple[int, int, int] | None = (0, 1, 2)
    #: Extra metadata (resolution, source) kept in reports and checkpoints.
    meta: Mapping[str, object] = field(default_factory=dict)
    #: Dataset-specific settings per preset, applied under the user's flags and --set, e.g.
    #: ``{"paper": {"train.batch_size": 24, "train.epochs": 30}}``.
    preset_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: Nodata value of predicted class maps (a dataset YAML's ``nodata_code``; 255 otherwise).
    nodata_code: int = IGNORE_INDEX

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def scenes(self, split: str) -> tuple[Scene, ...]:
        """Scenes of a split; a clear error when the split is empty or unknown."""
        scenes = self.splits.get(split, ())
        if not scenes:
            have = ", ".join(f"{k} ({len(v)})" for k, v in self.splits.items() if v) or "none"
            raise DataError(f"dataset '{self.name}' has no '{split}' scenes; splits found: {have}")
        return scenes


def image_benchmark_presets(epochs: int) -> dict[str, dict[str, object]]:
    """Preset settings shared by the image benchmarks (VOC, ADE20K): the MiB/PLOP/IDEC set-up
    (crop 512, batch 24, ``epochs`` per step, one random crop per image and epoch, whole
    images through one 512 px window padded with ignore) and a small CPU smoke set-up."""
    return {
        "paper": {
            "train.batch_size": 24, "train.epochs": epochs, "train.chips_per_scene": 1,
            "data.tile_size": 512, "train.lr": 0.01, "train.lr_incremental": 0.001,
            "data.min_class_fraction": 0.0001, "data.min_valid_fraction": 0.1,
            "eval.overlap": 0,
        },
        "cpu": {
            "train.iterations": 200, "train.iterations_incremental": 100,
            "data.tile_size": 256, "data.min_class_fraction": 0.001,
            "data.min_valid_fraction": 0.1, "eval.overlap": 0,
        },
    }


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
