"""GIS-grade outputs of prediction: Cloud-Optimized GeoTIFFs, palette PNGs, QGIS styles, RATs.

:class:`RasterStream` takes row bands pushed in order (``write(row, data)``) into a
temporary tiled GeoTIFF (never holding the whole raster), converts it with GDAL's COG driver
(DEFLATE, 256 px blocks, internal overviews) or PNG driver (:meth:`RasterStream.finish`), and
renames it onto the final path only in :meth:`RasterStream.commit`. Splitting finish and
commit lets a prediction finish every output first and rename them together at the end, the
class map last, so an interrupted run never leaves a partial file under a final name.

:class:`ClassRasterStream` is the class map: a colour table, class names in the band
metadata and dataset tags, a QGIS ``.qml`` style and a GDAL raster attribute table
(``OUT.tif.aux.xml``, see :mod:`geoidec.inference.rat`) beside it, so QGIS and ArcGIS show
classes by name and colour. Pixel values are class indices ``0..K-1``, or the classes'
``codes`` (a user's own label codes, e.g. forest = 5) when given: the colour table, names,
style and attribute table are then keyed by the codes. Class maps get overviews by MODE
(the most frequent class of each block; GIS convention for categorical rasters); the
prediction's confidence and probability layers ask :class:`RasterStream` for AVERAGE. GDAL
leaves nodata pixels out of both, and a block of nodata stays nodata. GDAL's COG driver
(GDAL 3.10) carries the colour table, band descriptions, band tags and dataset tags over
from the temporary file; the writer checks this after the copy. :func:`write_class_raster`
is the pull-style wrapper (an iterable of bands in, a finished class map out).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.files import refuse_existing
from geoidec.inference.overviews import overview_chain, remove_chain
from geoidec.inference.rat import write_rat_sidecar
from geoidec.inference.style import (
    Color,
    check_classes,
    class_metadata,
    names_by_value,
    pixel_values,
    write_qml,
)

__all__ = [
    "ClassRasterStream",
    "RasterStream",
    "class_metadata",
    "names_by_value",
    "pixel_values",
    "write_class_raster",
    "write_qml",
]

BLOCK = 256
"""Tile size of the written GeoTIFFs (pixels)."""

def _as_labels(labels: np.ndarray, row_start: int, width: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != width or labels.shape[0] == 0:
        raise ValueError(
            f"band at row {row_start} has shape {labels.shape}, expected (n_rows > 0, {width})"
        )
    if labels.dtype == np.uint8:
        return labels
    if labels.dtype.kind not in "iub":
        raise ValueError(f"band at row {row_start} has non-integer dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"band at row {row_start} has labels outside 0..255")
    return labels.astype(np.uint8)


def _set_class_metadata(
    dst: rasterio.io.DatasetWriter,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int,
    codes: Sequence[int] | None = None,
) -> None:
    values = pixel_values(len(class_names), codes)
    cmap = {v: (*(int(c) for c in color[:3]), 255) for v, color in zip(values, colors,
                                                                        strict=True)}
    cmap[nodata] = (0, 0, 0, 0)
    dst.write_colormap(1, cmap)
    dst.set_band_description(1, "class")
    names = json.dumps(names_by_value(class_names, codes))
    dst.update_tags(1, CLASS_NAMES=names)
    dst.update_tags(1, **{f"CLASS_{v}": str(n) for v, n in zip(values, class_names,
                                                                strict=True)})
    # Dataset-level too: PNG keeps only dataset metadata (as text chunks).
    dst.update_tags(CLASS_NAMES=names,
                    geoidec_classes=json.dumps(class_metadata(class_names, colors, codes)))


def _check_cog(path: Path, last_value: int, nodata: int, overviews: bool) -> None:
    """Fail loudly if the COG copy lost the layout, the colour table or the class tags."""
    with rasterio.open(path) as src:
        problems = []
        if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
            problems.append("layout is not COG")
        if src.block_shapes[0] != (BLOCK, BLOCK) and max(src.height, src.width) > BLOCK:
            problems.append(f"blocks {src.block_shapes[0]}")
        if src.nodata != nodata:
            problems.append(f"nodata {src.nodata}")
        try:
            cmap = src.colormap(1)
        except ValueError:
            cmap = {}
        if cmap.get(nodata, (0, 0, 0, 255))[3] != 0:
            problems.append("colour table missing")
        band_tags = src.tags(1)
        if "CLASS_NAMES" not in band_tags or f"CLASS_{last_value}" not in band_tags:
            problems.append("class tags missing")
        if "geoidec_classes" not in src.tags():
            problems.append("dataset tag missing")
        if overviews and max(src.height, src.width) > BLOCK and not src.overviews(1):
            problems.append("overviews missing")
    if problems:
        raise RuntimeError(f"COG conversion of {path} lost: {', '.join(problems)}")


class RasterStream:
    """Write a raster row band by row band, then convert and rename it atomically.

    Bands go into ``.{name}.partial.tif`` (tiled 256 x 256, ZSTD level 1: read once)
    beside ``path``;
    :meth:`finish` converts it to ``.{name}.cog.tif`` with GDAL's COG driver (DEFLATE, 256 px
    blocks, internal overviews when the raster exceeds one block) or, for ``fmt="PNG"``, to
    ``.{name}.tmp.png`` with the PNG driver; :meth:`commit` renames the result onto ``path``.
    :meth:`abort` (also called when a ``with`` block raises) removes every temporary and
    leaves an existing ``path`` untouched. Memory holds one band plus GDAL's block cache.

    Args:
        path: final path.
        height: raster rows.
        width: raster columns.
        count: number of bands.
        nodata: nodata value (uint8).
        crs: anything rasterio accepts as a CRS, or ``None`` (pixel space: no CRS written,
            identity ``transform`` allowed without warnings).
        transform: affine geotransform; ``None`` means identity.
        fmt: ``"COG"`` or ``"PNG"`` (8-bit; PNG holds no georeferencing).
        overwrite: replace an existing ``path`` (at :meth:`commit` only).
        overviews: build internal overviews (COG; skipped by GDAL within one block).
        overview_resampling: GDAL resampling for overviews (``nearest``, ``mode``,
            ``average``).
        descriptions: band descriptions (``count`` strings), or ``None``.
        gray: mark the bands' colour interpretation grey/undefined (not RGB).
        tags: extra dataset tags (provenance), or ``None``.
        predictor: DEFLATE with horizontal differencing (``PREDICTOR=2``): smaller and
            faster for continuous layers (confidence, probabilities), not for class maps.
        level: DEFLATE level of the COG (libdeflate, 1-12; GDAL's default 6).
        threads: threads GDAL compresses the COG's blocks with (``NUM_THREADS``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: invalid size, format or resampling.
    """

    def __init__(
        self,
        path: Path,
        *,
        height: int,
        width: int,
        count: int = 1,
        nodata: int = IGNORE_INDEX,
        crs: Any = None,
        transform: Affine | None = None,
        fmt: str = "COG",
        overwrite: bool = False,
        overviews: bool = True,
        overview_resampling: str = "nearest",
        descriptions: Sequence[str] | None = None,
        gray: bool = True,
        tags: dict[str, str] | None = None,
        predictor: bool = False,
        level: int = 6,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        refuse_existing(self.path, overwrite=overwrite)
        if height <= 0 or width <= 0:
            raise ValueError(f"raster size must be positive, got {height}x{width}")
        self.fmt = fmt.upper()
        if self.fmt not in ("COG", "PNG"):
            raise ValueError(f"fmt must be COG or PNG, not {fmt}")
        if overview_resampling.lower() not in ("nearest", "mode", "average"):
            raise ValueError(
                f"overview_resampling must be nearest, mode or average, not {overview_resampling}"
            )
        if descriptions is not None and len(descriptions) != count:
            raise ValueError(f"{len(descriptions)} descriptions for {count} band(s)")
        self.height, self.width, self.count = height, width, count
        self.nodata = nodata
        self.crs = crs
        self.overviews = overviews
        self.overview_resampling = overview_resampling.upper()
        self.predictor, self.level, self.threads = predictor, int(level), max(1, int(threads))
        self.partial = self.path.with_name(f".{self.path.name}.partial.tif")
        suffix = ".cog.tif" if self.fmt == "COG" else ".tmp.png"
        self.converted = self.path.with_name(f".{self.path.name}{suffix}")
        self._row = 0
        self._pixels = 0
        self._chunked = False
        self._finished = False
        self._dst: rasterio.io.DatasetWriter | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff", "height": height, "width": width, "count": count,
            "dtype": "uint8", "nodata": nodata, "crs": crs,
            "transform": Affine.identity() if transform is None else transform,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK,
            # read once by the conversion: the fastest codec that keeps the file small
            "compress": "zstd", "zstd_level": 1, "bigtiff": "if_safer",
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._dst = rasterio.open(self.partial, "w", **profile)
            if descriptions is not None:
                for i, text in enumerate(descriptions, start=1):
                    self._dst.set_band_description(i, str(text))
            if gray and count > 1:
                self._dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (
                    count - 1)
            if tags:
                self._dst.update_tags(**{k: str(v) for k, v in tags.items()})
            self.setup(self._dst)
        except BaseException:
            self.abort()
            raise

    # ----------------------------------------------------------------- hooks
    def setup(self, dst: rasterio.io.DatasetWriter) -> None:
        """Called once on the open temporary file (metadata); subclasses override."""

    def check(self, path: Path) -> None:
        """Called on the converted file; raise if the conversion lost something."""
        if self.fmt == "COG":
            with rasterio.open(path) as src:
                if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
                    raise RuntimeError(f"COG conversion of {path} lost the COG layout")

    def before_commit(self) -> None:
        """Called just before the rename (sidecar files); subclasses override."""

    # ------------------------------------------------------------------- API
    def write(self, row_start: int, data: np.ndarray, col: int = 0) -> None:
        """Write ``data`` (count, n, w) or, for one band, (n, w) at rows ``[row_start,
        row_start + n)`` and columns ``[col, col + w)``; uint8 (other integer dtypes in
        0..255 are cast).

        Full-width bands (``col == 0``, ``w == width``) must come in order, top to bottom;
        narrower chunks (strips) may come in any order but must cover the raster exactly
        once (checked by pixel count in :meth:`finish`).
        """
        if self._dst is None or self._finished:
            raise RuntimeError(f"{self.path}: write after finish/abort")
        data = np.asarray(data)
        if data.ndim == 2 and self.count == 1:
            data = data[None]
        if data.ndim != 3 or data.shape[0] != self.count or data.shape[1] == 0:
            raise ValueError(f"band at row {row_start} has shape {data.shape}, expected "
                             f"({self.count}, n_rows, {self.width})")
        n, w = data.shape[1:]
        full = col == 0 and w == self.width
        if full and not self._chunked and row_start != self._row:
            raise ValueError(f"band starts at row {row_start}, expected {self._row}")
        if not full:
            self._chunked = True
        if row_start < 0 or col < 0 or col + w > self.width:
            raise ValueError(f"chunk at row {row_start}, column {col} of width {w} is outside "
                             f"the raster ({self.width} columns)")
        if row_start + n > self.height:
            raise ValueError(f"band at row {row_start} overruns height {self.height}")
        data = np.stack([_as_labels(b, row_start, w) for b in data])
        self._dst.write(data, window=Window(col, row_start, w, n))
        self._row = row_start + n
        self._pixels += n * w

    def finish(self) -> Path:
        """Close the temporary file, convert it (COG or PNG) and check it; return the
        converted temporary (readable until :meth:`commit` or :meth:`abort`)."""
        if self._dst is None:
            raise RuntimeError(f"{self.path}: finish after abort")
        if self._finished:
            return self.converted
        try:
            self._dst.close()
            if self._chunked and self._pixels != self.height * self.width:
                raise ValueError(f"chunks cover {self._pixels} of {self.height * self.width} "
                                 "pixels")
            if not self._chunked and self._row != self.height:
                raise ValueError(f"bands cover rows [0, {self._row}) of {self.height}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                if self.fmt == "COG":
                    if self.overviews and self.overview_resampling in ("MODE", "AVERAGE"):
                        overview_chain(self.partial, self.overview_resampling, self.nodata,
                                       BLOCK)
                    rasterio.shutil.copy(
                        self.partial, self.converted, driver="COG", COMPRESS="DEFLATE",
                        BLOCKSIZE=BLOCK, OVERVIEWS="AUTO" if self.overviews else "NONE",
                        OVERVIEW_RESAMPLING=self.overview_resampling, BIGTIFF="IF_SAFER",
                        LEVEL=self.level, PREDICTOR="YES" if self.predictor else "NO",
                        NUM_THREADS=self.threads,
                    )
                else:
                    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
                        rasterio.shutil.copy(self.partial, self.converted, driver="PNG",
                                             WRITE_METADATA_AS_TEXT="YES", ZLEVEL=6)
                self.check(self.converted)
            self.partial.unlink(missing_ok=True)
            remove_chain(self.partial)
            self._finished = True
        except BaseException:
            self.abort()
            raise
        return self.converted

    def commit(self) -> Path:
        """Finish if needed and rename the converted file onto ``path``; return ``path``."""
        self.finish()
        try:
            self.before_commit()
            os.replace(self.converted, self.path)
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        """Close and remove every temporary; an existing ``path`` is left untouched."""
        if self._dst is not None and not self._dst.closed:
            try:
                self._dst.close()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        remove_chain(self.partial)
        for tmp in (self.partial, self.converted):
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + ".aux.xml").unlink(missing_ok=True)

    def __enter__(self) -> RasterStream:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()


class ClassRasterStream(RasterStream):
    """The single-band uint8 class map: colour table, class names, QGIS style and RAT.

    Pixels hold the value of each class: its index ``i``, or ``codes[i]`` when codes are
    given (the caller writes those values; everything below is keyed by them). Written
    metadata: colour table (value of class ``i`` -> ``colors[i]``, nodata -> transparent
    black); band description ``"class"``; band tags ``CLASS_NAMES`` (JSON list of names
    indexed by pixel value, ``""`` where a value is no class) and ``CLASS_{value}``; dataset
    tags ``CLASS_NAMES`` and ``geoidec_classes`` (JSON list of index/name/color, plus code
    with codes). For ``fmt="COG"``, just before the rename: with ``qml`` a QGIS style
    ``path.with_suffix('.qml')`` and with ``rat`` a GDAL raster attribute table
    ``path + '.aux.xml'`` (Value, Count, Class, Red, Green, Blue). :attr:`counts` holds the
    pixels written per value (0..255). Overviews are built by MODE unless
    ``overview_resampling`` says otherwise.

    Args:
        path: final path.
        class_names: names of classes ``0..K-1``.
        colors: ``(r, g, b)`` of classes ``0..K-1``.
        nodata: nodata value, above every class index (default 255); with codes, any value
            that is no code.
        codes: pixel value of each class (distinct, 0..255), or ``None`` for the indices.
        qml: write the QGIS style (COG only).
        rat: write the raster attribute table sidecar (COG only).
        **kwargs: the rest of :class:`RasterStream`'s arguments (``count`` is 1).
    """

    def __init__(
        self,
        path: Path,
        *,
        class_names: Sequence[str],
        colors: Sequence[Color],
        nodata: int = IGNORE_INDEX,
        codes: Sequence[int] | None = None,
        qml: bool = True,
        rat: bool = True,
        **kwargs: Any,
    ) -> None:
        check_classes(class_names, colors, nodata, codes)
        self.class_names = [str(n) for n in class_names]
        self.colors = cast("list[Color]",
                           [tuple(int(c) for c in color[:3]) for color in colors])
        self.codes = None if codes is None else [int(c) for c in codes]
        #: Pixel value of each class (its code, else its index).
        self.values = pixel_values(len(self.class_names), self.codes)
        self.qml = qml
        self.rat = rat
        self.counts = np.zeros(256, dtype=np.int64)
        kwargs.setdefault("overview_resampling", "mode")
        super().__init__(path, count=1, nodata=nodata, gray=False, **kwargs)

    def setup(self, dst: rasterio.io.DatasetWriter) -> None:
        _set_class_metadata(dst, self.class_names, self.colors, self.nodata, self.codes)

    def write(self, row_start: int, data: np.ndarray, col: int = 0) -> None:
        data = np.asarray(data)
        labels = data[0] if data.ndim == 3 and data.shape[0] == 1 else data
        labels = _as_labels(labels, row_start, labels.shape[-1] if labels.ndim == 2 else -1)
        super().write(row_start, labels, col)
        self.counts += np.bincount(labels.ravel(), minlength=256)

    def check(self, path: Path) -> None:
        if self.fmt == "COG":
            _check_cog(path, self.values[-1], self.nodata, self.overviews)
            return
        with rasterio.open(path) as src:
            try:
                cmap = src.colormap(1)
            except ValueError:
                cmap = {}
            if len(cmap) < len(self.class_names):
                raise RuntimeError(f"PNG conversion of {path} lost the palette")

    def before_commit(self) -> None:
        if self.fmt != "COG":
            return
        if self.qml:
            write_qml(self.path.with_suffix(".qml"), self.class_names, self.colors, self.nodata,
                      self.codes)
        if self.rat:
            write_rat_sidecar(self.path, self.class_names, self.colors,
                              self.counts[self.values].tolist(), values=self.codes)


def write_class_raster(
    path: Path,
    bands: Iterable[tuple[int, np.ndarray]],
    *,
    height: int,
    width: int,
    crs: Any,
    transform: Affine | None,
    class_names: Sequence[str],
    colors: Sequence[Color],
    nodata: int = IGNORE_INDEX,
    overwrite: bool = False,
    overviews: bool = True,
    overview_resampling: str = "mode",
    qml: bool = True,
    rat: bool = True,
    fmt: str = "COG",
    codes: Sequence[int] | None = None,
) -> Path:
    """Stream label bands into a Cloud-Optimized single-band uint8 class GeoTIFF.

    Pull-style wrapper of :class:`ClassRasterStream`: every band of ``bands`` is written,
    then the file is converted and renamed onto ``path``; on any error the temporaries are
    removed and an existing ``path`` is left untouched. Memory holds one band plus GDAL's
    block cache. See :class:`ClassRasterStream` for the metadata written.

    Args:
        path: final GeoTIFF path (or PNG path with ``fmt="PNG"``).
        bands: ``(row_start, labels (n_rows, width))`` in order, covering ``[0, height)``
            exactly once; labels are class indices (or ``codes``) with ``nodata`` where
            invalid (any integer dtype with values in 0..255 is accepted and cast to uint8).
        height: raster rows.
        width: raster columns.
        crs: anything rasterio accepts as a CRS, or ``None`` for pixel-space inputs (then
            no CRS is written, and an identity ``transform`` is allowed without warnings).
        transform: affine geotransform; ``None`` means identity.
        class_names: names of classes ``0..K-1``.
        colors: ``(r, g, b)`` of classes ``0..K-1``.
        nodata: nodata value, above every class index (default 255); with codes, any
            value that is no code.
        overwrite: replace an existing ``path`` (at the final rename only).
        overviews: build internal overviews (skipped by GDAL for rasters within one block).
        overview_resampling: GDAL resampling for overviews, ``"mode"`` (default: the most
            frequent class of each block, nodata left out) or ``"nearest"``.
        qml: also write the QGIS ``.qml`` style.
        rat: also write the raster attribute table ``path + '.aux.xml'``.
        fmt: ``"COG"`` or ``"PNG"`` (palette PNG, no sidecars).
        codes: pixel value of class ``i`` (the labels hold codes), or ``None`` (indices).

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: bands out of order, of the wrong shape, or not covering the raster.
    """
    if overview_resampling.lower() not in ("nearest", "mode"):
        raise ValueError(f"overview_resampling must be nearest or mode, not {overview_resampling}")
    with ClassRasterStream(
        path, height=height, width=width, crs=crs, transform=transform,
        class_names=class_names, colors=colors, nodata=nodata, overwrite=overwrite,
        overviews=overviews, overview_resampling=overview_resampling, qml=qml, rat=rat,
        fmt=fmt, codes=codes,
    ) as stream:
        for row_start, labels in bands:
            stream.write(row_start, labels)
        return stream.commit()
