"""The finishing step of a streamed raster: its temporary tiled GeoTIFF converted to the final
format.

:func:`convert_to_cog` copies it with GDAL's COG driver (DEFLATE, :data:`BLOCK` px blocks,
internal overviews when the raster exceeds one block; MODE and AVERAGE overviews are
computed beforehand in numpy as a ``.ovr`` chain, see :mod:`geoidec.inference.overviews`,
which the driver copies). :func:`convert_to_png` writes an 8-bit PNG (the palette PNG of
photos; no georeferencing, the metadata as text chunks, no ``.aux.xml``). :func:`is_cog`
tells whether a converted file kept the COG layout.
"""

from __future__ import annotations

from pathlib import Path

import rasterio
import rasterio.shutil

from geoidec.inference.overviews import overview_chain

__all__ = ["BLOCK", "convert_to_cog", "convert_to_png", "is_cog"]

BLOCK = 256
"""Tile size of the written GeoTIFFs (pixels)."""


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
    """Copy ``partial`` to the Cloud-Optimized GeoTIFF ``converted``.

    Args:
        partial: the temporary tiled GeoTIFF.
        converted: the COG written.
        nodata: nodata value (left out of MODE and AVERAGE overviews).
        overviews: build internal overviews (skipped by GDAL within one block).
        resampling: GDAL overview resampling, upper case (``NEAREST``, ``MODE``,
            ``AVERAGE``).
        level: DEFLATE level (libdeflate, 1-12).
        predictor: horizontal differencing (``PREDICTOR=2``).
        threads: threads GDAL compresses the blocks with (``NUM_THREADS``).
        chain_from: overview levels already written beside ``partial`` (MODE and AVERAGE).
    """
    if overviews and resampling in ("MODE", "AVERAGE"):
        overview_chain(partial, resampling, nodata, BLOCK, start=chain_from)
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
