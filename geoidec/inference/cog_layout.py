"""Cloud-Optimized GeoTIFFs laid out from tiles compressed while the raster was written.

GDAL's COG driver makes a COG by copying a finished raster: every tile is decompressed and
compressed again, after the last window of the scene, on the critical path of every
prediction (8,000^2 class map and confidence: 1.0 s of CPU, 40 % of the null model's run on
one thread). Here the temporary raster and its overview files are written with the COG's
own compression (DEFLATE at the COG's level and predictor, :data:`BLOCK` px tiles) by the
writer thread, with GDAL's compression threads, as the rows come; :func:`assemble_cog` then
only copies their compressed tiles into GDAL's COG layout
(https://gdal.org/drivers/raster/cog.html, "Header ghost area")::

    TIFF header | ghost area (GDAL_STRUCTURAL_METADATA) | IFD of the full resolution, then
    one per overview level, each followed by its tag data | the tiles of the smallest
    overview, ..., the tiles of the full resolution, each as
    uint32 size | compressed bytes | their last 4 bytes repeated

The full-resolution IFD keeps every tag of the temporary raster byte for byte
(georeferencing, GDAL metadata and nodata, colour table, band descriptions), with the new
tile offsets; each overview IFD has its level's size and tiles, NewSubfileType 1 (reduced
image) and the image structure of the full resolution (compression, predictor, photometric
interpretation, colour table, sample format), as GDAL writes them. Only classic
little-endian TIFFs of one tiled IFD each are read; whatever else turns up
(:class:`LayoutUnsupported`: a file that would pass 4 GiB, strips, a second IFD, tiles
compressed differently) is left to GDAL's COG driver by the caller.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["GHOST", "LayoutUnsupported", "TiffImage", "assemble_cog", "read_image"]

GHOST_BODY = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
              "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
"""GDAL's structural metadata of a COG (the final space is GDAL's: room for ``YES``)."""
GHOST = (f"GDAL_STRUCTURAL_METADATA_SIZE={len(GHOST_BODY):06d} bytes\n{GHOST_BODY}").encode()

NEW_SUBFILE_TYPE, WIDTH, HEIGHT = 254, 256, 257
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325
STRIP_OFFSETS = 273
STRUCTURE = (258, 259, 262, 277, 284, 317, 320, 338, 339, 42113)
"""Tags an overview IFD takes from the full resolution, as GDAL's COG driver writes them:
BitsPerSample, Compression, Photometric, SamplesPerPixel, PlanarConfiguration, Predictor,
ColorMap, ExtraSamples, SampleFormat, GDAL_NODATA."""
ENCODING = (258, 259, 277, 284, 317, 339)
"""Tags that must agree between the levels for their tiles to be copied as they are."""
SHORT, LONG, LONG8 = 3, 4, 16
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
             13: 4, 16: 8, 17: 8, 18: 8}
ARRAY = {SHORT: "<u2", LONG: "<u4", LONG8: "<u8"}
LIMIT = 2**32 - 1
"""Largest offset of a classic TIFF: a bigger COG is GDAL's (BigTIFF)."""

Tag = tuple[int, int, bytes]
"""``(type, count, value bytes)`` of one TIFF tag."""


class LayoutUnsupported(ValueError):
    """The files cannot be laid out here; GDAL's COG driver copies them instead."""


@dataclass
class TiffImage:
    """One tiled image of a TIFF file: its tags (tile offsets and byte counts apart)."""

    path: Path
    tags: dict[int, Tag]
    offsets: np.ndarray
    counts: np.ndarray


def read_image(path: Path) -> TiffImage:
    """The first (and only) image of the tiled TIFF or BigTIFF ``path``."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] != b"II":
            raise LayoutUnsupported(f"{path.name}: not a little-endian TIFF")
        (magic,) = struct.unpack_from("<H", head, 2)
        big = magic == 43
        if magic not in (42, 43):
            raise LayoutUnsupported(f"{path.name}: not a TIFF")
        count_fmt, entry_fmt, inline = ("<Q", "<HHQ", 8) if big else ("<H", "<HHI", 4)
        (start,) = struct.unpack_from("<Q" if big else "<I", head, 8 if big else 4)
        f.seek(start)
        count_size = struct.calcsize(count_fmt)
        (n,) = struct.unpack(count_fmt, f.read(count_size))
        entry_size = struct.calcsize(entry_fmt) + inline
        entries = f.read(n * entry_size + inline)
        tags: dict[int, Tag] = {}
        for i in range(n):
            at = i * entry_size
            tag, kind, count = struct.unpack_from(entry_fmt, entries, at)
            if kind not in TYPE_SIZE:
                raise LayoutUnsupported(f"{path.name}: tag {tag} of unknown type {kind}")
            size = TYPE_SIZE[kind] * count
            field = entries[at + struct.calcsize(entry_fmt) : at + entry_size]
            if size <= inline:
                raw = field[:size]
            else:
                (where,) = struct.unpack("<Q" if big else "<I", field)
                f.seek(where)
                raw = f.read(size)
            tags[tag] = (kind, count, raw)
        (following,) = struct.unpack_from("<Q" if big else "<I", entries, n * entry_size)
    if following:
        raise LayoutUnsupported(f"{path.name}: more than one image")
    if STRIP_OFFSETS in tags or TILE_OFFSETS not in tags or TILE_BYTE_COUNTS not in tags:
        raise LayoutUnsupported(f"{path.name}: not tiled")
    arrays = []
    for tag in (TILE_OFFSETS, TILE_BYTE_COUNTS):
        kind, count, raw = tags.pop(tag)
        arrays.append(np.frombuffer(raw, ARRAY[kind], count=count).astype(np.uint64))
    if any(kind in (LONG8, 17, 18) for kind, _, _ in tags.values()):
        raise LayoutUnsupported(f"{path.name}: 64-bit tag values")
    return TiffImage(Path(path), tags, arrays[0], arrays[1])


def _overview_tags(main: TiffImage, level: TiffImage) -> dict[int, Tag]:
    """An overview IFD's tags: its size and tiling, the full resolution's structure."""
    for tag in ENCODING:
        if main.tags.get(tag) != level.tags.get(tag):
            raise LayoutUnsupported(f"{level.path.name}: tag {tag} differs from the image's")
    tags = {tag: level.tags[tag] for tag in (WIDTH, HEIGHT, TILE_WIDTH, TILE_LENGTH)}
    tags.update({tag: main.tags[tag] for tag in STRUCTURE if tag in main.tags})
    tags[NEW_SUBFILE_TYPE] = (LONG, 1, struct.pack("<I", 1))
    return tags


def _ifd_size(tags: dict[int, Tag], tiles: int) -> int:
    """Bytes of a classic IFD with ``tags`` and ``tiles`` LONG offsets and byte counts,
    each value that does not fit in its entry stored after it at an even offset."""
    size = 2 + 12 * (len(tags) + 2) + 4
    for _, _, raw in tags.values():
        if len(raw) > 4:
            size += len(raw) + len(raw) % 2
    if tiles > 1:
        size += 2 * 4 * tiles
    return size


def _ifd_bytes(at: int, tags: dict[int, Tag], offsets: np.ndarray, counts: np.ndarray,
               following: int) -> bytes:
    """The classic IFD written at file offset ``at`` (entries sorted by tag)."""
    tags = dict(tags)
    tags[TILE_OFFSETS] = (LONG, len(offsets), offsets.astype("<u4").tobytes())
    tags[TILE_BYTE_COUNTS] = (LONG, len(counts), counts.astype("<u4").tobytes())
    entries, extra = [struct.pack("<H", len(tags))], []
    extra_at = at + 2 + 12 * len(tags) + 4
    for tag in sorted(tags):
        kind, count, raw = tags[tag]
        if len(raw) <= 4:
            entries.append(struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0"))
            continue
        entries.append(struct.pack("<HHII", tag, kind, count, extra_at))
        padded = raw + b"\0" * (len(raw) % 2)
        extra.append(padded)
        extra_at += len(padded)
    entries.append(struct.pack("<I", following))
    return b"".join(entries + extra)


def assemble_cog(image: Path, overviews: list[Path], out: Path) -> None:
    """Write the COG ``out`` from the tiled TIFF ``image`` and its overview levels
    ``overviews`` (largest first; one TIFF each, tiled and compressed like ``image``),
    copying their compressed tiles. Raises :class:`LayoutUnsupported` (before writing
    anything) when the files are not of that kind or the COG would need a BigTIFF."""
    levels = [read_image(image), *(read_image(p) for p in overviews)]
    main = levels[0]
    tags = [{t: v for t, v in main.tags.items() if t != NEW_SUBFILE_TYPE}]
    tags += [_overview_tags(main, level) for level in levels[1:]]
    if any((level.counts > 0).any() and (level.counts < 4).any() for level in levels):
        raise LayoutUnsupported(f"{image.name}: a tile of fewer than 4 bytes")
    # where everything goes: IFDs one after the other, then the tiles, smallest level first
    ifd_at, at = [], len(GHOST) + 8 + len(GHOST) % 2
    for level, level_tags in zip(levels, tags, strict=True):
        ifd_at.append(at)
        at += _ifd_size(level_tags, len(level.offsets))
        at += at % 2
    positions: list[np.ndarray] = [np.empty(0, np.uint64)] * len(levels)
    for i in reversed(range(len(levels))):
        counts = levels[i].counts
        stored = np.where(counts > 0, counts + 8, 0)  # leader + data + trailer
        ends = at + np.cumsum(stored, dtype=np.uint64)
        positions[i] = np.where(counts > 0, ends - stored + 4, 0).astype(np.uint64)
        at = int(ends[-1]) if len(ends) else at
    if at > LIMIT:
        raise LayoutUnsupported(f"{image.name}: the COG would pass 4 GiB")
    header = bytearray(b"II" + struct.pack("<HI", 42, ifd_at[0]) + GHOST)
    header += b"\0" * (ifd_at[0] - len(header))
    with open(out, "wb") as dst:
        dst.write(header)
        for i, level in enumerate(levels):
            following = ifd_at[i + 1] if i + 1 < len(levels) else 0
            block = _ifd_bytes(ifd_at[i], tags[i], positions[i], level.counts, following)
            dst.write(block + b"\0" * (len(block) % 2))
        for level in reversed(levels):
            _copy_tiles(level, dst)


def _copy_tiles(level: TiffImage, dst: BinaryIO) -> None:
    """Each stored tile of ``level`` into ``dst`` as size leader, data, last 4 bytes."""
    fd = os.open(level.path, os.O_RDONLY)
    try:
        for offset, count in zip(level.offsets.tolist(), level.counts.tolist(), strict=True):
            if count == 0:
                continue
            data = os.pread(fd, count, offset)
            if len(data) != count:
                raise OSError(f"{level.path.name}: a tile is cut short")
            dst.write(struct.pack("<I", count) + data + data[-4:])
    finally:
        os.close(fd)
