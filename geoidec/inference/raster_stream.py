"""Streaming writer of a prediction's rasters: row bands in, one finished file out.

:class:`RasterStream` takes row bands pushed in order (``write(row, data)``), or strips in
any order, into a temporary tiled GeoTIFF (never holding the whole raster), converts it to a
COG or a PNG (:meth:`RasterStream.finish`, see :mod:`geoidec.inference.conversion`) and
renames it onto the final path only in :meth:`RasterStream.commit`. Splitting finish and
commit lets a prediction finish every output first and rename them together at the end, the
class map last, so an interrupted run never leaves a partial file under a final name. The
prediction's confidence and probability layers are plain streams with AVERAGE overviews;
the class map is :class:`geoidec.inference.class_raster.ClassRasterStream`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from geoidec.constants import IGNORE_INDEX
from geoidec.files import refuse_existing
from geoidec.inference.block_rows import BlockRows
from geoidec.inference.conversion import (
    BLOCK,
    cog_codec,
    convert_to_cog,
    convert_to_png,
    is_cog,
)
from geoidec.inference.overview_stream import OverviewStream
from geoidec.inference.overviews import QUICK, remove_chain
from geoidec.inference.stream_checks import as_uint8, check_arguments

__all__ = ["RasterStream"]


class RasterStream:
    """Write a raster row band by row band, then convert and rename it atomically.

    Bands go into ``.{name}.partial.tif`` beside ``path`` (tiled 256 x 256, compressed as
    the COG will be: DEFLATE at ``level``, with ``predictor``; ZSTD level 1 for a PNG);
    :meth:`finish` lays its tiles and those of its overview levels out as the COG
    ``.{name}.cog.tif`` (internal overviews when the raster exceeds one block; see
    :mod:`geoidec.inference.conversion`) or, for ``fmt="PNG"``, converts it to
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
        threads: threads GDAL compresses the blocks with (``NUM_THREADS``), as they are
            written.

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
        check_arguments(height, width, fmt, overview_resampling, descriptions, count)
        self.fmt = fmt.upper()
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
        self._rows: BlockRows | None = None  # writes cut at block rows
        self._ovr: OverviewStream | None = None  # MODE/AVERAGE levels made as bands come
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._dst = self._open_partial(transform)
            self._rows = BlockRows(self._dst, BLOCK, height)
            self._describe(self._dst, descriptions, gray, tags)
            self.setup(self._dst)
            if self.fmt == "COG" and overviews and self.overview_resampling != "NEAREST":
                self._ovr = OverviewStream(self.partial, height, width, count,
                                           self.overview_resampling, nodata, BLOCK,
                                           codec=cog_codec(self.level, self.predictor))
        except BaseException:
            self.abort()
            raise

    def _open_partial(self, transform: Affine | None) -> rasterio.io.DatasetWriter:
        """The temporary tiled GeoTIFF, open for writing."""
        profile = {
            "driver": "GTiff", "height": self.height, "width": self.width,
            "count": self.count, "dtype": "uint8", "nodata": self.nodata, "crs": self.crs,
            "transform": Affine.identity() if transform is None else transform,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK,
            "bigtiff": "if_safer", **self._codec(),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(self.partial, "w", **profile)

    def _codec(self) -> dict[str, Any]:
        """Creation options of the temporary file: a COG's own compression (its tiles are
        laid out as they are), else the quickest codec (a PNG conversion reads the file
        once)."""
        if self.fmt == "COG":
            return cog_codec(self.level, self.predictor, self.threads)
        return dict(QUICK)

    def _describe(self, dst: rasterio.io.DatasetWriter, descriptions: Sequence[str] | None,
                  gray: bool, tags: dict[str, str] | None) -> None:
        """Band descriptions, colour interpretation and dataset tags of the temporary file."""
        if descriptions is not None:
            for i, text in enumerate(descriptions, start=1):
                dst.set_band_description(i, str(text))
        if gray and self.count > 1:
            dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (self.count - 1)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})

    # ----------------------------------------------------------------- hooks
    def setup(self, dst: rasterio.io.DatasetWriter) -> None:
        """Called once on the open temporary file (metadata); subclasses override."""

    def check(self, path: Path) -> None:
        """Called on the converted file; raise if the conversion lost something."""
        if self.fmt == "COG":
            with rasterio.open(path) as src:
                if not is_cog(src):
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
        if data.dtype != np.uint8:
            data = np.stack([as_uint8(b, row_start, w) for b in data])
        assert self._rows is not None
        self._rows.write(row_start, col, data)
        if self._ovr is not None:
            self._ovr.add(row_start, col, data)
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
            assert self._rows is not None
            self._rows.flush()
            self._dst.close()
            levels = self._ovr.close() if self._ovr is not None else 0
            if self._chunked and self._pixels != self.height * self.width:
                raise ValueError(f"chunks cover {self._pixels} of {self.height * self.width} "
                                 "pixels")
            if not self._chunked and self._row != self.height:
                raise ValueError(f"bands cover rows [0, {self._row}) of {self.height}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                if self.fmt == "COG":
                    convert_to_cog(self.partial, self.converted, nodata=self.nodata,
                                   overviews=self.overviews,
                                   resampling=self.overview_resampling, level=self.level,
                                   predictor=self.predictor, threads=self.threads,
                                   chain_from=levels)
                else:
                    convert_to_png(self.partial, self.converted)
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
        if self._ovr is not None:
            self._ovr.close()
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
