"""COGs laid out from the tiles compressed while the raster was written
(geoidec/inference/cog_layout.py) against the COGs GDAL's driver copies from the same
rasters: the same pixels at every level, the same tags, and GDAL's COG layout byte by byte
where the layout is defined (ghost area, IFDs before the data, tiles smallest level first,
size leader and repeated last 4 bytes)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

import geoidec.inference.conversion as conversion
from geoidec.inference import cog_layout
from geoidec.inference.class_raster import ClassRasterStream
from geoidec.inference.cog_layout import GHOST, LayoutUnsupported, assemble_cog, read_image
from geoidec.inference.conversion import cog_codec, is_cog
from geoidec.inference.raster_stream import RasterStream

TRANSFORM = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5800000.0)
H, W = 700, 1100  # levels 350 x 550, 175 x 275, 87 x 137 (GDAL's AUTO levels, 256 px blocks)
NAMES, COLOURS = ["background", "forest", "water"], [(0, 0, 0), (0, 120, 0), (0, 0, 200)]


def class_map() -> np.ndarray:
    rng = np.random.default_rng(7)
    data = np.kron(rng.integers(0, 3, (H // 25 + 1, W // 30 + 1)),
                   np.ones((25, 30), np.int64))[:H, :W].astype(np.uint8)
    data[rng.random((H, W)) < 0.1] = 1
    data[50:180, 600:900] = 255  # nodata
    return data


def write(path: Path, data: np.ndarray, **kwargs: object) -> Path:
    """A class map (or, with ``count``, a multi-band layer) streamed in row bands of 384
    rows and finished: laid out, unless the test forces GDAL's copy."""
    if data.ndim == 2:
        stream: RasterStream = ClassRasterStream(
            path, class_names=NAMES, colors=COLOURS, height=H, width=W, crs="EPSG:32633",
            transform=TRANSFORM, tags={"source": "test"}, **kwargs)
    else:
        stream = RasterStream(path, height=H, width=W, count=len(data), crs="EPSG:32633",
                              transform=TRANSFORM, overview_resampling="average",
                              descriptions=[f"band {i}" for i in range(len(data))],
                              predictor=True, level=4, **kwargs)
    for row in range(0, H, 384):
        stream.write(row, data[..., row : row + 384, :])
    return stream.commit()


def gdal_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every conversion take GDAL's COG driver (the reference)."""
    def refuse(*args: object) -> None:
        raise LayoutUnsupported("reference")

    monkeypatch.setattr(conversion, "assemble_cog", refuse)


def levels(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
        out = [src.read()]
    for i in range(count):
        with rasterio.open(path, overview_level=i) as ovr:
            out.append(ovr.read())
    return out


SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 11: 4, 12: 8}


def ifds(path: Path) -> list[tuple[int, dict[int, tuple[int, int, int]]]]:
    """``(offset, {tag: (type, count, value or offset)})`` of every IFD of a classic TIFF."""
    raw = path.read_bytes()
    at, out = struct.unpack_from("<I", raw, 4)[0], []
    while at:
        (n,) = struct.unpack_from("<H", raw, at)
        entries = [struct.unpack_from("<HHII", raw, at + 2 + 12 * i) for i in range(n)]
        out.append((at, {tag: (kind, count, value) for tag, kind, count, value in entries}))
        (at,) = struct.unpack_from("<I", raw, at + 2 + 12 * n)
    return out


def tag_values(path: Path, entries: dict[int, tuple[int, int, int]]) -> dict[int, bytes]:
    """The value bytes of each tag (read from where the entry points when they do not fit
    in it), tile offsets and byte counts left out."""
    raw, out = path.read_bytes(), {}
    for tag, (kind, count, value) in entries.items():
        size = SIZES[kind] * count
        if tag not in (324, 325):
            out[tag] = (raw[value : value + size] if size > 4
                        else struct.pack("<I", value)[:size])
    return out


def tiles(path: Path, entries: dict[int, tuple[int, int, int]]) -> list[tuple[int, int]]:
    raw = path.read_bytes()
    offsets, counts = (np.frombuffer(raw, "<u4", entries[t][1], entries[t][2]).tolist()
                       if entries[t][1] > 1 else [entries[t][2]] for t in (324, 325))
    return list(zip(offsets, counts, strict=True))


@pytest.mark.parametrize("layer", ["classes", "probabilities"])
def test_laid_out_cog_equals_gdal_cog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      layer: str) -> None:
    data = class_map()
    if layer == "probabilities":  # three continuous bands, predictor, AVERAGE overviews
        ramp = np.linspace(0, 100, W, dtype=np.float32)[None, :] + np.zeros((H, 1))
        data = np.stack([ramp, 100 - ramp, np.where(data == 255, 255, data * 40)]).astype(
            np.uint8)
    ours = write(tmp_path / "ours.tif", data)
    gdal_copy(monkeypatch)
    theirs = write(tmp_path / "theirs.tif", data)
    mine, reference = levels(ours), levels(theirs)
    assert len(mine) == len(reference) == 4
    for a, b in zip(mine, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        assert is_cog(a) and is_cog(b)
        assert (a.crs, a.transform, a.nodata, a.descriptions) == (b.crs, b.transform,
                                                                  b.nodata, b.descriptions)
        assert a.tags() == b.tags() and a.tags(1) == b.tags(1)
        assert a.tags(ns="IMAGE_STRUCTURE") == b.tags(ns="IMAGE_STRUCTURE")
        assert a.colorinterp == b.colorinterp
        if layer == "classes":
            assert a.colormap(1) == b.colormap(1)
    # every overview IFD carries the same tags as GDAL's (the image structure and nodata),
    # but for GDAL's photometric RGB (without extra samples) on the overviews of a 3-band
    # grey image, where ours repeat the full resolution's grey and its extra samples
    own = {3: (262, 338)}.get(len(data) if data.ndim == 3 else 1, ())
    structure = [{t: v for t, v in tag_values(ours, e).items() if t not in own}
                 for _, e in ifds(ours)[1:]]
    assert structure == [{t: v for t, v in tag_values(theirs, e).items() if t not in own}
                         for _, e in ifds(theirs)[1:]]
    main = tag_values(ours, ifds(ours)[0][1])
    assert all(main[t] == v for t, v in structure[0].items() if t in (258, 259, 262, 317, 320))
    # within about a hundred bytes of GDAL's file (both DEFLATE at the same level)
    assert abs(ours.stat().st_size - theirs.stat().st_size) < 0.01 * theirs.stat().st_size


def test_laid_out_cog_has_gdal_layout(tmp_path: Path) -> None:
    """Ghost area after the header, IFDs (and their tag data) before any tile, the tiles of
    the smallest level first and row-major within a level, each stored as uint32 size,
    data, and its last 4 bytes again."""
    out = write(tmp_path / "map.tif", class_map())
    raw = out.read_bytes()
    assert raw[:4] == b"II*\0" and raw[8 : 8 + len(GHOST)] == GHOST
    found = ifds(out)
    assert found[0][0] == 8 + len(GHOST) + len(GHOST) % 2
    assert [at for at, _ in found] == sorted(at for at, _ in found)
    level_tiles = [tiles(out, entries) for _, entries in found]
    first = min(offset for t in level_tiles for offset, _ in t)
    assert found[-1][0] < first
    previous_end = first - 4
    for stored in reversed(level_tiles):  # smallest level first
        for offset, count in stored:
            assert offset == previous_end + 4  # leader right before the data
            assert struct.unpack_from("<I", raw, offset - 4)[0] == count
            assert raw[offset + count : offset + count + 4] == raw[offset + count - 4 :
                                                                    offset + count]
            previous_end = offset + count + 4
    assert previous_end == len(raw)


def test_bigtiff_input_and_more_than_4_gib_fall_back(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A BigTIFF temporary (GDAL writes one for rasters that could pass 4 GiB) is read
    and laid out as a classic COG; a COG that would pass 4 GiB is refused before anything
    is written, and the stream then takes GDAL's copy (same pixels)."""
    data = class_map()
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8",
                       tiled=True, blockxsize=256, blockysize=256, bigtiff="yes",
                       **cog_codec(6, False)) as dst:
        dst.write(data, 1)
    assert big.read_bytes()[2:4] == b"+\0"
    assemble_cog(big, [], tmp_path / "from_big.tif")
    with rasterio.open(tmp_path / "from_big.tif") as src:
        assert is_cog(src)
        np.testing.assert_array_equal(src.read(1), data)
    monkeypatch.setattr(cog_layout, "LIMIT", 1000)
    with pytest.raises(LayoutUnsupported, match="4 GiB"):
        assemble_cog(big, [], tmp_path / "refused.tif")
    assert not (tmp_path / "refused.tif").exists()
    copies: list[object] = []
    real_copy = rasterio.shutil.copy
    monkeypatch.setattr(rasterio.shutil, "copy", lambda *a, **k: copies.append(a) or
                        real_copy(*a, **k))
    out = write(tmp_path / "fallback.tif", data)
    assert len(copies) == 1
    np.testing.assert_array_equal(levels(out)[0][0], data)


def test_nearest_overviews_are_gdals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NEAREST overviews are computed by GDAL's COG driver (nothing laid out); MODE ones
    never reach it."""
    copies: list[object] = []
    real_copy = rasterio.shutil.copy
    monkeypatch.setattr(rasterio.shutil, "copy", lambda *a, **k: copies.append(k) or
                        real_copy(*a, **k))
    write(tmp_path / "mode.tif", class_map())
    assert copies == []
    out = write(tmp_path / "nearest.tif", class_map(), overview_resampling="nearest")
    assert [k["OVERVIEW_RESAMPLING"] for k in copies] == ["NEAREST"]  # type: ignore[index]
    with rasterio.open(out) as src:
        assert is_cog(src) and src.overviews(1) == [2, 4, 8]


def test_unreadable_layouts_are_refused(tmp_path: Path) -> None:
    """Striped, big-endian and multi-image TIFFs are not laid out (GDAL copies them)."""
    data = class_map()
    profile = {"driver": "GTiff", "height": H, "width": W, "count": 1, "dtype": "uint8"}
    with rasterio.open(tmp_path / "strips.tif", "w", **profile) as dst:
        dst.write(data, 1)
    with pytest.raises(LayoutUnsupported, match="not tiled"):
        read_image(tmp_path / "strips.tif")
    with rasterio.open(tmp_path / "motorola.tif", "w", tiled=True, endianness="big",
                       **profile) as dst:
        dst.write(data, 1)
    with pytest.raises(LayoutUnsupported, match="little-endian"):
        read_image(tmp_path / "motorola.tif")
    rasterio.shutil.copy(tmp_path / "strips.tif", tmp_path / "cog.tif", driver="COG")
    with pytest.raises(LayoutUnsupported, match="more than one image"):
        read_image(tmp_path / "cog.tif")


def test_writes_are_cut_at_block_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row bands of 384 rows reach GDAL cut at 256-row block rows (the rest held for the
    next band of the same columns); another column range or flush writes what is held,
    and more than HOLD_BYTES is never held."""
    from geoidec.inference import block_rows
    from geoidec.inference.block_rows import BlockRows

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[tuple[int, int, int, int, int]] = []

        def write(self, data: np.ndarray, window: Window) -> None:
            self.writes.append((int(window.row_off), int(window.height), int(window.col_off),
                                int(window.width), int(data[0, 0, 0])))

    dst = Recorder()
    rows = BlockRows(dst, 256, 1000)  # type: ignore[arg-type]
    band = np.zeros((1, 384, 30), np.uint8)
    for i, row in enumerate((0, 384)):
        rows.write(row, 0, band + i)
    rows.write(768, 0, np.full((1, 232, 30), 2, np.uint8))  # reaches the last row
    assert dst.writes == [(0, 256, 0, 30, 0), (256, 512, 0, 30, 0), (768, 232, 0, 30, 2)]
    dst.writes.clear()
    rows.write(0, 40, band)  # a strip: rows 256-383 held
    rows.write(0, 80, band)  # other columns: the held rows go first, as they are
    rows.flush()
    assert dst.writes == [(0, 256, 40, 30, 0), (256, 128, 40, 30, 0), (0, 256, 80, 30, 0),
                          (256, 128, 80, 30, 0)]
    dst.writes.clear()
    monkeypatch.setattr(block_rows, "HOLD_BYTES", 128 * 30 - 1)  # 128 rows x 30 columns
    rows.write(0, 0, band)  # too much to hold: written whole
    assert dst.writes == [(0, 384, 0, 30, 0)]
