"""The finishing step of a streamed raster: its temporary tiled GeoTIFF converted to the final
format.

A COG's temporary raster and its overview levels are written with the COG's own compression
(:func:`cog_codec`: DEFLATE, level, predictor, :data:`BLOCK` px tiles), so
:func:`convert_to_cog` lays their compressed tiles out as a COG without compressing anything
again (:func:`~geoidec.inference.cog_layout.assemble_cog`). MODE and AVERAGE overviews are
computed beforehand in numpy as a ``.ovr`` chain (see :mod:`geoidec.inference.overviews`).
Whatever that cannot lay out (NEAREST overviews, which GDAL computes; a COG past 4 GiB,
which needs a BigTIFF) is copied by GDAL's COG driver, the same file up to the bytes of the
compressed tiles. :func:`convert_to_png` writes an 8-bit PNG (the palette PNG of photos; no
georeferencing, the metadata as text chunks, no ``.aux.xml``). :func:`is_cog` tells whether
a converted file kept the COG layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil

from geoidec.inference.cog_layout import LayoutUnsupported, assemble_cog
from geoidec.inference.overviews import overview_chain

__all__ = ["BLOCK", "cog_codec", "convert_to_cog", "convert_to_png", "is_cog"]

BLOCK = 256
"""Tile size of the written GeoTIFFs (pixels)."""


def cog_codec(level: int, predictor: bool, threads: int = 1) -> dict[str, Any]:
    """GDAL GTiff creation options that compress tiles as the COG stores them: DEFLATE at
    ``level`` (libdeflate, 1-12), horizontal differencing with ``predictor``, on ``threads``
    threads (``NUM_THREADS``: blocks are compressed beside the writer)."""
    codec: dict[str, Any] = {"compress": "deflate", "zlevel": int(level),
                             "num_threads": max(1, int(threads))}
    if predictor:
        codec["predictor"] = 2
    return codec


def convert_to_cog(
    partial: Path,
    converted: Path,
    *,
    nodata: int,
    overviews: bool,
    resampling: str,
    level: int,
    predictor: bool,
    threads: int,
    chain_from: int = 0,
) -> None:
    """Make the Cloud-Optimized GeoTIFF ``converted`` of ``partial``.

    Args:
        partial: the temporary tiled GeoTIFF, compressed as :func:`cog_codec` says (any
            compression when GDAL copies it).
        converted: the COG written.
        nodata: nodata value (left out of MODE and AVERAGE overviews).
        overviews: build internal overviews (none for a raster within one block).
        resampling: overview resampling, upper case (``NEAREST``, ``MODE``, ``AVERAGE``).
        level: DEFLATE level (libdeflate, 1-12).
        predictor: horizontal differencing (``PREDICTOR=2``).
        threads: threads GDAL compresses with (``NUM_THREADS``).
        chain_from: overview levels already written beside ``partial`` (MODE and AVERAGE).
    """
    if not overviews or resampling in ("MODE", "AVERAGE"):  # levels computed here
        levels = (overview_chain(partial, resampling, nodata, BLOCK, start=chain_from,
                                 codec=cog_codec(level, predictor)) if overviews else [])
        try:  # every level is there, compressed like the COG
            assemble_cog(partial, levels, converted)
            return
        except LayoutUnsupported:
            converted.unlink(missing_ok=True)
    rasterio.shutil.copy(
        partial, converted, driver="COG", COMPRESS="DEFLATE",
        BLOCKSIZE=BLOCK, OVERVIEWS="AUTO" if overviews else "NONE",
        OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER",
        LEVEL=level, PREDICTOR="YES" if predictor else "NO",
        NUM_THREADS=threads,
    )


def convert_to_png(partial: Path, converted: Path) -> None:
    """Copy ``partial`` to the PNG ``converted`` (metadata as text chunks, no ``.aux.xml``)."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(partial, converted, driver="PNG",
                             WRITE_METADATA_AS_TEXT="YES", ZLEVEL=6)


def is_cog(src: rasterio.DatasetReader) -> bool:
    """Whether the open raster ``src`` has GDAL's COG layout."""
    return bool(src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG")
