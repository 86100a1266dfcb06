"""Overviews made while a raster is written (OverviewStream) against the chain made after it:
the same levels, pixel for pixel, whichever way the raster arrives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoidec.inference.overview_stream import OverviewStream
from geoidec.inference.overviews import overview_chain
from geoidec.inference.raster_stream import RasterStream

TRANSFORM = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5800000.0)
H, W, NODATA = 1100, 1300, 255  # levels 550 x 650, 275 x 325, 137 x 162


def scene() -> np.ndarray:
    """Blocky classes 0-4 with noise and a nodata rectangle (odd edges on purpose)."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 5, (H // 37 + 1, W // 41 + 1))
    data = np.kron(coarse, np.ones((37, 41), np.int64))[:H, :W].astype(np.uint8)
    noise = rng.random((H, W)) < 0.2
    data[noise] = rng.integers(0, 5, int(noise.sum()))
    data[101:333, 517:871] = NODATA
    return data


def levels(path: Path) -> list[np.ndarray]:
    """Every overview level of a COG, largest first."""
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
    out = []
    for i in range(count):
        with rasterio.open(path, overview_level=i) as ovr:
            out.append(ovr.read(1))
    return out


def streamed(tmp_path: Path, name: str, chunks: list[tuple[int, int, int, int]],
             resampling: str) -> tuple[Path, int]:
    """The COG of :func:`scene` written in ``chunks`` (row, col, rows, cols), and how many
    overview levels were complete when it finished."""
    data = scene()
    stream = RasterStream(tmp_path / name, height=H, width=W, nodata=NODATA,
                          crs="EPSG:32633", transform=TRANSFORM, overview_resampling=resampling)
    for row, col, n, w in chunks:
        stream.write(row, data[row:row + n, col:col + w], col=col)
    assert stream._ovr is not None
    complete = stream._ovr.streamable
    return stream.commit(), complete


def bands(col: int, width: int, rows: int = 384) -> list[tuple[int, int, int, int]]:
    return [(r, col, min(rows, H - r), width) for r in range(0, H, rows)]


@pytest.mark.parametrize("resampling", ["mode", "average"])
def test_streamed_levels_equal_the_chain(tmp_path: Path, resampling: str) -> None:
    # the reference: a column at odd offset stops streaming at level 1, so the chain makes all
    reference, complete = streamed(tmp_path, "ref.tif", bands(1, W - 1) + bands(0, 1),
                                   resampling)
    assert complete == 0
    want = levels(reference)
    assert [a.shape for a in want] == [(550, 650), (275, 325), (137, 162)]
    cases = {
        "rows.tif": (bands(0, W), 3),  # full-width row bands: every level streamed
        # strips at column 768 (384, 192, 96 at the levels): every level streamed
        "strips.tif": (bands(768, W - 768) + bands(0, 768), 3),
        # a strip border at column 770 (385 at level 1): level 1 streamed, the rest chained
        "mixed.tif": (bands(770, W - 770) + bands(0, 770), 1),
        # 250-row bands (125 at level 1, odd inside the level): level 1 only
        "odd_rows.tif": (bands(0, W, rows=250), 1),
    }
    for name, (chunks, expected) in cases.items():
        path, complete = streamed(tmp_path, name, chunks, resampling)
        assert complete == expected, name
        got = levels(path)
        for level, (a, b) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} level {level + 1}")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []


def test_levels_made_while_writing_match_overview_chain_on_the_same_raster(
        tmp_path: Path) -> None:
    """Directly: an OverviewStream fed in row bands writes the files overview_chain writes."""
    data = scene()[None]
    base = tmp_path / "a.tif"
    profile = {"driver": "GTiff", "height": H, "width": W, "count": 1, "dtype": "uint8",
               "nodata": NODATA, "crs": "EPSG:32633", "transform": TRANSFORM,
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(base, "w", **profile) as dst:
        dst.write(data)
    copy = tmp_path / "b.tif"
    copy.write_bytes(base.read_bytes())
    stream = OverviewStream(copy, H, W, 1, "mode", NODATA, 256)
    for row in range(0, H, 384):
        stream.add(row, 0, data[:, row:row + 384])
    assert stream.close() == 3
    for a, b in zip(overview_chain(base, "mode", NODATA, 256),
                    [copy.with_name("b.tif" + ".ovr" * k) for k in (1, 2, 3)], strict=True):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            np.testing.assert_array_equal(x.read(), y.read())
