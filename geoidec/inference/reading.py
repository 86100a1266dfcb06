"""Reading a scene's windows for prediction: raw values straight into the batch buffer.

:class:`WindowReader` is the predictor's ``read``: called with a window, it returns the
standardised bands and the valid mask; :meth:`WindowReader.read_into` writes them into a
slot of the predictor's reused batch buffer instead (no per-window arrays, no stacking).
It runs in the predictor's reading threads, one GDAL handle per thread
(:class:`ThreadReaders`).

Normalisation (:class:`~geoidec.data.normalization.Normalization`: scale to [0, 1], clip,
standardise) is one table lookup per pixel for 8- and 16-bit bands: the table holds the
normalised value of every possible raw value, computed once with the same float32
operations, so the result is bit for bit that of the arithmetic. Other dtypes take the
arithmetic. When no pixel can be invalid (:attr:`SceneReader.all_valid`: an integer raster
without nodata, mask, alpha or fill value) no mask is read or applied.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from rasterio.windows import Window

from geoidec.data.base import Scene
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import SceneReader
from geoidec.inference.preview import PreviewSampler

__all__ = ["SingleReader", "ThreadReaders", "WindowReader", "lookup_table"]

LUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
"""Raw dtypes normalised by table lookup (256 or 65,536 float32 entries per band)."""


class _Readers(Protocol):
    def get(self) -> Any: ...


class SingleReader:
    """One open reader, for a :class:`WindowReader` used by one thread at a time."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def get(self) -> Any:
        return self.reader


class ThreadReaders:
    """One :class:`SceneReader` per reading thread (a GDAL dataset handle must not be shared
    between threads), opened on first use and closed together."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._local = threading.local()
        self._opened: list[SceneReader] = []
        self._lock = threading.Lock()

    def get(self) -> SceneReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = SceneReader(self.scene).__enter__()
            self._local.reader = reader
            with self._lock:
                self._opened.append(reader)
        return reader

    def close(self) -> None:
        with self._lock:
            for reader in self._opened:
                reader.__exit__(None, None, None)
            self._opened.clear()


def lookup_table(norm: Normalization, dtype: np.dtype) -> np.ndarray:
    """``(bands, 2**bits)`` float32: the normalised value of every raw value of ``dtype``
    (uint8 or uint16), computed as :meth:`Normalization.to_unit` then
    :meth:`~Normalization.standardize` compute it for an image read as float32."""
    n = np.iinfo(dtype).max + 1
    values = np.broadcast_to(np.arange(n, dtype=np.float32), (norm.bands, 1, n))
    return np.ascontiguousarray(
        np.asarray(norm.standardize(norm.to_unit(values)), dtype=np.float32)[:, 0])


class WindowReader:
    """``read(window) -> (x (C, t, t) float32, valid (t, t))`` for the predictor, with
    :meth:`read_into` for its batch buffers (thread-safe).

    ``x`` holds the bands standardised by each of ``normalizations`` in turn (a change map
    runs two models), 0 where invalid; the part of a window beyond the scene is mirrored
    from inside, or 0 with ``mirror=False`` (evaluation's convention), ``valid`` False there.
    ``preview`` gets every window's raw values.
    """

    def __init__(self, readers: _Readers, normalizations: Sequence[Normalization],
                 preview: PreviewSampler | None = None, mirror: bool = True) -> None:
        self.readers = readers
        self.mirror = mirror
        self.normalizations = list(normalizations)
        self.preview = preview
        self.channels = sum(n.bands for n in self.normalizations)
        self._tables: dict[tuple[int, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        t_h, t_w = int(window.height), int(window.width)
        x = np.empty((self.channels, t_h, t_w), dtype=np.float32)
        valid = np.empty((t_h, t_w), dtype=bool)
        self.read_into(window, x, valid)
        return x, valid

    def read_into(self, window: Window, out: np.ndarray, valid: np.ndarray) -> None:
        """Write window ``window``'s standardised bands into ``out`` (C, t, t) float32 and
        its mask into ``valid`` (t, t) bool."""
        reader = self.readers.get()
        row, col = int(window.row_off), int(window.col_off)
        th, tw = int(window.height), int(window.width)
        h, w = min(th, reader.height - row), min(tw, reader.width - col)
        if (h, w) != (th, tw) or not hasattr(reader, "read_raw"):
            x, ok = self._padded(reader, row, col, h, w, th, tw)
            out[...], valid[...] = x, ok
            return
        data, ok = reader.read_raw(Window(col, row, w, h))
        if self.preview is not None:
            self.preview.add_window(row, col, data, np.ones((h, w), bool) if ok is None else ok)
        self._standardise(data, ok, out)
        if ok is None:
            valid.fill(True)
        else:
            valid[...] = ok

    def _standardise(self, data: np.ndarray, ok: np.ndarray | None, out: np.ndarray) -> None:
        """``data`` standardised by each normalisation in turn into ``out``, 0 where ``ok``
        is False (``None``: every pixel valid)."""
        start = 0
        for i, norm in enumerate(self.normalizations):
            self._normalise(i, norm, data, out[start : start + norm.bands])
            start += norm.bands
        if ok is not None:
            np.copyto(out, 0.0, where=~ok)

    def _normalise(self, i: int, norm: Normalization, data: np.ndarray,
                   out: np.ndarray) -> None:
        if data.dtype in LUT_DTYPES:
            table = self._table(i, norm, data.dtype)
            for band in range(norm.bands):
                np.take(table[band], data[band], out=out[band], mode="clip")
            return
        out[...] = norm.standardize(norm.to_unit(data.astype(np.float32)))

    def _table(self, i: int, norm: Normalization, dtype: np.dtype) -> np.ndarray:
        key = (i, dtype.str)
        table = self._tables.get(key)
        if table is None:
            with self._lock:
                table = self._tables.setdefault(key, lookup_table(norm, dtype))
        return table

    def _padded(self, reader: Any, row: int, col: int, h: int, w: int, th: int,
                tw: int) -> tuple[np.ndarray, np.ndarray]:
        """A window overhanging the scene (or a reader without raw reads): arithmetic
        normalisation, mirrored (or zero) padding."""
        if not self.mirror:  # the reader pads with invalid zeros itself
            h, w = th, tw
        image, valid = reader.read_image(Window(col, row, w, h))
        if self.preview is not None:
            self.preview.add_window(row, col, image, valid)
        x = np.empty((self.channels, *valid.shape), dtype=np.float32)
        self._standardise(image, valid, x)
        if (h, w) != (th, tw):
            x = np.pad(x, ((0, 0), (0, th - h), (0, tw - w)), mode="symmetric")
            valid = np.pad(valid, ((0, th - h), (0, tw - w)))
        return x, valid
