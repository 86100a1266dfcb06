"""Where the output layers go: the final streams of one prediction (:class:`Sinks`), the
background writer, and the distributed part/merge steps of a shared scene."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from geoidec.checkpoint import Checkpoint
from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import DataError
from geoidec.inference.class_raster import ClassRasterStream
from geoidec.inference.distributed import PartFile, PredictGroup, merge_preview_rows, read_part
from geoidec.inference.layers import code_table, layer_count, output_layers
from geoidec.inference.outputs import CHANGE_CLASSES, CHANGE_COLORS, OutputPaths
from geoidec.inference.preview import PreviewSampler
from geoidec.inference.raster_stream import RasterStream
from geoidec.inference.strips import SumChunk

__all__ = ["CONTINUOUS", "Background", "Sinks", "encode_all", "merge_and_complete",
           "predict_part", "release_freed_memory"]

TRIM_EVERY = 8
"""Row bands written between two returns of freed heap memory to the system."""

CONTINUOUS: dict[str, Any] = {"predictor": True, "level": 4}
"""COG encoding of the confidence and probability layers: horizontal differencing and
DEFLATE level 4 (8,000^2 benchmark confidence: 14.2 MB in 1.2 s of CPU against 18.6 MB in
2.0 s at level 6 without the predictor)."""


class Background:
    """Run ``fn(*args)`` calls in order in one background thread, at most ``depth`` queued:
    the outputs of a row band are encoded (class map, DEFLATE blocks) while the model
    predicts the next. An error in ``fn`` is raised in the caller at the next
    :meth:`submit` or on exit; on exit the thread has finished (nothing writes after).
    ``depth=0`` runs each call at once in the caller's thread."""

    def __init__(self, fn: Callable[..., None], depth: int = 2) -> None:
        self.fn, self.depth = fn, depth
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoidec-write")
                      if depth > 0 else None)
        self._pending: deque[Future[None]] = deque()

    def submit(self, *args: object) -> None:
        if self._pool is None:
            self.fn(*args)
            return
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self.fn, *args))

    def __enter__(self) -> Background:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if kind is None:
                while self._pending:
                    self._pending.popleft().result()
        finally:
            for future in self._pending:
                future.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)


def encode_all(chunks: Iterator[SumChunk], sink: Sinks | PartFile, k: int,
               lut: np.ndarray | None, paths: OutputPaths, background: bool) -> None:
    """Turn every chunk of blended sums into output layers (in this thread: the chunks are
    views of the accumulator) and write them to ``sink``, in a background thread while the
    next chunk is predicted when ``background``."""

    written = [0]

    def write(row: int, col: int, layers: np.ndarray) -> None:
        sink.write(row, col, layers)
        written[0] += 1
        if written[0] % TRIM_EVERY == 0:
            release_freed_memory()

    with Background(write, depth=2 if background else 0) as writer:
        for row, col, acc, wsum, valid in chunks:
            writer.submit(row, col, output_layers(acc, wsum, valid, k, lut, paths))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them, and the peak memory of a
    long prediction crept up with them: 8,000^2 benchmark, 1436 MiB without, 1388 with a
    trim after every band). Called every :data:`TRIM_EVERY` bands: pages given back are
    faulted in again by the next forward, which costs CPU when done every band."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Sinks:
    """The final output streams of one prediction, fed with :func:`output_layers` chunks (output
    indices; the class map gets the classes' codes when ``codes`` are given)."""

    def __init__(self, paths: OutputPaths, names: list[str], colors: list, k: int,
                 change_from: Checkpoint | None, provenance: dict[str, str],
                 geo: dict, sampler: PreviewSampler | None, *,
                 codes: list[int] | None = None, nodata: int = IGNORE_INDEX) -> None:
        self.k, self.sampler = k, sampler
        self.conf = self.probs = self.change = None
        self.streams: list[RasterStream] = []
        self.code_table = code_table(codes, nodata)
        self.classes = ClassRasterStream(paths.classes, class_names=names, colors=colors,
                                         codes=codes, nodata=nodata, fmt=paths.fmt,
                                         tags=provenance, **geo)
        self.streams.append(self.classes)
        if paths.confidence is not None:
            self.conf = RasterStream(paths.confidence, descriptions=["confidence (%)"],
                                     overview_resampling="average", tags=provenance,
                                     **CONTINUOUS, **geo)
            self.streams.append(self.conf)
        if paths.probabilities is not None:
            self.probs = RasterStream(paths.probabilities, count=k, descriptions=names,
                                      overview_resampling="average", tags=provenance,
                                      **CONTINUOUS, **geo)
            self.streams.append(self.probs)
        self.transitions = np.zeros((change_from.num_classes if change_from else 0, k),
                                    dtype=np.int64)
        if paths.change is not None and change_from is not None:
            self.change = ClassRasterStream(
                paths.change, class_names=CHANGE_CLASSES, colors=CHANGE_COLORS,
                tags={**provenance, "geoidec_change_from": str(change_from.path)}, **geo)
            self.streams.append(self.change)

    @property
    def nodata_pixels(self) -> int:
        """Class-map pixels written as nodata so far (no class has the nodata value)."""
        return int(self.classes.counts[self.classes.nodata])

    def write(self, row: int, col: int, layers: np.ndarray) -> None:
        """Write one chunk of :func:`output_layers` at scene ``(row, col)``."""
        labels = layers[0]
        self.classes.write(row, labels if self.code_table is None else self.code_table[labels],
                           col)
        i = 1
        if self.conf is not None:
            self.conf.write(row, layers[i], col)
            i += 1
        if self.probs is not None:
            self.probs.write(row, layers[i : i + self.k], col)
            i += self.k
        if self.change is not None:
            self.change.write(row, layers[i], col)
            valid = labels != IGNORE_INDEX
            theirs = layers[i + 1][valid].astype(np.int64)
            self.transitions += np.bincount(
                theirs * self.k + labels[valid], minlength=self.transitions.size
            ).reshape(self.transitions.shape)
        if self.sampler is not None:
            self.sampler.add_labels(row, labels, col)

    def finish(self) -> None:
        """Convert every stream (overviews, COG): side by side when GDAL may use several
        threads (8,000^2 class map + confidence: 1.9 s one after the other)."""
        threads = self.classes.threads
        if threads <= 1 or len(self.streams) == 1:
            for stream in self.streams:
                stream.finish()
            return
        with ThreadPoolExecutor(min(threads, len(self.streams)),
                                thread_name_prefix="geoidec-finish") as pool:
            for future in [pool.submit(stream.finish) for stream in self.streams]:
                future.result()

    def commit(self) -> None:
        for stream in self.streams[1:]:
            stream.commit()
        self.classes.commit()  # last: its presence marks the scene as done

    def abort(self) -> None:
        for stream in self.streams:
            stream.abort()


def predict_part(group: PredictGroup, chunks: Iterator[SumChunk], paths: OutputPaths,
                 rows: tuple[int, int] | None, width: int, k: int, lut: np.ndarray | None,
                 background: bool) -> PartFile:
    """This rank's rows into its part file; raises (on every rank) if any rank failed."""
    assert rows is not None
    part = None
    error: BaseException | None = None
    try:
        part = PartFile(group.part_path(paths.classes), rows, width, layer_count(paths, k))
        encode_all(chunks, part, k, lut, paths, background)
        part.close()
    except Exception as exc:  # noqa: BLE001 - reported to every rank below
        error = exc
    errors = group.gather_errors(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        if part is not None:
            part.remove()
        raise error
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        if part is not None:
            part.remove()
        r, e = failed[0]
        raise DataError(f"prediction rank {r} failed: {e}")
    assert part is not None
    return part


def merge_and_complete(group: PredictGroup, sinks: Sinks | None, out: Path, height: int,
                       sampler: PreviewSampler | None, complete: Callable[[], int]) -> int:
    """After every rank wrote its part: rank 0 streams the parts, in row order, into the
    final outputs and completes them; every rank learns whether that worked. Part files are
    removed either way. Returns the polygon count (0 on the other ranks)."""
    shares = group.gather_to_main(
        (*group.rows(height), sampler.image, sampler.valid) if sampler is not None else None)
    error: BaseException | None = None
    polygons = 0
    if sinks is not None:
        try:
            if sampler is not None and shares:
                merge_preview_rows(sampler, [s for s in shares[1:] if s is not None],
                                   sampler.step)
            for r in range(group.world):
                y0, y1 = group.rows(height, r)
                if y1 > y0:
                    for row, col, layers in read_part(group.part_path(out, r), y0):
                        sinks.write(row, col, layers)
            polygons = complete()
        except BaseException as exc:  # noqa: BLE001 - reported to every rank, then raised
            error = exc
        finally:
            for r in range(group.world):
                group.part_path(out, r).unlink(missing_ok=True)
    errors = group.gather_errors(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if errors[0] is not None:
        raise DataError(f"prediction rank 0 failed writing the outputs: {errors[0]}")
    return polygons
