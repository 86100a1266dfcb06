"""The class map writer: a COG (or palette PNG) that GIS software shows by class name and colour.

:class:`ClassRasterStream` is a :class:`~geoidec.inference.raster_stream.RasterStream` of one
uint8 band with a colour table, class names in the band metadata and dataset tags, a QGIS
``.qml`` style (:mod:`geoidec.inference.style`) and a GDAL raster attribute table
(``OUT.tif.aux.xml``, see :mod:`geoidec.inference.rat`) beside it, so QGIS and ArcGIS show
classes by name and colour. Pixel values are class indices ``0..K-1``, or the classes'
``codes`` (a user's own label codes, e.g. forest = 5) when given: the colour table, names,
style and attribute table are then keyed by the codes. Class maps get overviews by MODE
(the most frequent class of each block; GIS convention for categorical rasters); GDAL
leaves nodata pixels out, and a block of nodata stays nodata. The COG keeps the colour
table, band descriptions, band tags and dataset tags of the temporary file (its tags are
copied with its tiles, see :mod:`geoidec.inference.cog_layout`; GDAL's COG driver, when it
makes the copy, carries them over too); the writer checks this after the copy.
:func:`write_class_raster` is the pull-style wrapper (an iterable of bands in, a finished
class map out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
from affine import Affine

from geoidec.constants import IGNORE_INDEX
from geoidec.inference.conversion import BLOCK, is_cog
from geoidec.inference.raster_stream import RasterStream
from geoidec.inference.rat import write_rat_sidecar
from geoidec.inference.stream_checks import as_uint8
from geoidec.inference.style import (
    Color,
    check_classes,
    class_metadata,
    names_by_value,
    pixel_values,
    write_qml,
)

__all__ = ["ClassRasterStream", "value_counts", "write_class_raster"]


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
        if not is_cog(src):
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


COUNTED_ONE_BY_ONE = 16
"""Up to this many expected values, a chunk's pixels are counted value by value."""


def value_counts(labels: np.ndarray, expected: Sequence[int]) -> np.ndarray:
    """Pixels of each value 0..255 in the uint8 ``labels``: ``np.bincount``'s counts.

    With few ``expected`` values (the class values and nodata) each is counted on its own,
    one pass over ``labels`` apiece (6 classes and nodata on 384 x 2,048 labels: 0.24 ms
    instead of bincount's 1.3, which first widens every label to 64 bits); when other
    values occur too, bincount counts them all."""
    if len(expected) <= COUNTED_ONE_BY_ONE:
        counts = np.zeros(256, dtype=np.int64)
        for value in set(expected):
            counts[value] = np.count_nonzero(labels == value)
        if counts.sum() == labels.size:
            return counts
    return np.bincount(labels.ravel(), minlength=256)


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
        labels = as_uint8(labels, row_start, labels.shape[-1] if labels.ndim == 2 else -1)
        super().write(row_start, labels, col)
        self.counts += value_counts(labels, [*self.values, self.nodata])

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
