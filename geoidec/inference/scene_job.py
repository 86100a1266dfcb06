"""The outputs of one scene's prediction: their class metadata and provenance, the final
streams (:class:`~geoidec.inference.sinks.Sinks`), the finishing steps once every band is
written (GeoPackage polygons, preview, the commit that renames every output, the class map
last) and the :class:`~geoidec.inference.outputs.Prediction` returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoidec.checkpoint import Checkpoint
from geoidec.constants import IGNORE_INDEX
from geoidec.inference.checks import check_result
from geoidec.inference.outputs import OutputPaths, Prediction
from geoidec.inference.preflight import check_codes, min_area_pixels
from geoidec.inference.preview import PreviewSampler, write_preview
from geoidec.inference.sinks import Sinks
from geoidec.inference.vectors import polygonize_class_raster

__all__ = ["SceneJob"]


class SceneJob:
    """One scene's outputs: the class metadata (names, colours, codes, nodata), the preview
    sampler, the :class:`Sinks` (rank 0 only; ``None`` elsewhere), the sidecars written when
    every band is in and the :class:`Prediction` returned."""

    def __init__(self, checkpoint: Checkpoint, paths: OutputPaths, name: str, transform: Any,
                 overwrite: bool, simplify: float, vector_band_rows: int,
                 min_area: str | None, change_from: Checkpoint | None) -> None:
        self.checkpoint, self.paths, self.name = checkpoint, paths, name
        self.transform, self.overwrite, self.simplify = transform, overwrite, simplify
        self.vector_band_rows, self.min_area = vector_band_rows, min_area
        self.change_from = change_from
        self.names = [c.name for c in checkpoint.classes]
        self.colors = [c.color for c in checkpoint.classes]
        self.k = checkpoint.num_classes
        self.codes = checkpoint.codes
        self.nodata = checkpoint.nodata_code if self.codes is not None else IGNORE_INDEX
        if self.codes is not None:
            check_codes(checkpoint, self.names, self.codes, self.nodata)
        self.sampler: PreviewSampler | None = None
        self.sinks: Sinks | None = None

    def start_preview(self, height: int, width: int, bands: int) -> None:
        """Sample the input for the quick-look, when one is requested."""
        if self.paths.preview is not None:
            norm = self.checkpoint.normalization
            self.sampler = PreviewSampler(
                height, width, bands=bands, rgb_bands=self.checkpoint.meta.get("rgb_bands"),
                low=norm.low, high=norm.high)

    def open_sinks(self, geo: dict) -> Sinks:
        """The final output streams (``geo``: size, CRS, transform, overwrite, threads),
        tagged with the checkpoint, its step and the input."""
        provenance = {"geoidec_checkpoint": str(Path(self.checkpoint.path).resolve()),
                      "geoidec_step": str(self.checkpoint.meta.get("step", "")),
                      "geoidec_input": self.name}
        self.sinks = Sinks(self.paths, self.names, self.colors, self.k, self.change_from,
                           provenance, geo, self.sampler, codes=self.codes, nodata=self.nodata)
        return self.sinks

    def complete(self) -> int:
        """Finish and commit every output (rank 0); the polygon count."""
        sinks = self.sinks
        assert sinks is not None
        count = 0
        sinks.finish()
        if self.paths.vectors is not None:
            _, count = polygonize_class_raster(
                sinks.classes.converted, self.paths.vectors, self.names,
                simplify=self.simplify, band_rows=self.vector_band_rows,
                overwrite=self.overwrite, nodata=self.nodata, codes=self.codes,
                colors=self.colors, min_pixels=min_area_pixels(self.min_area, self.transform))
        if self.paths.preview is not None and self.sampler is not None:
            write_preview(self.paths.preview, self.sampler, self.names, self.colors,
                          title=self.name, overwrite=self.overwrite)
        sinks.commit()
        return count

    def abort(self) -> None:
        """Remove every temporary of the outputs (nothing under a final name is touched)."""
        if self.sinks is not None:
            self.sinks.abort()

    def result(self, height: int, width: int, messages: list[str],
               polygons: int) -> Prediction:
        """What was written and found; the result guard-rails are added to ``messages``."""
        sinks = self.sinks
        if sinks is None:  # another rank wrote the outputs
            return Prediction(paths=self.paths, height=height, width=width, counts=[],
                              nodata_pixels=0, polygons=0, warnings=messages)
        counts = sinks.classes.counts[sinks.classes.values].tolist()
        messages += check_result(counts, sinks.nodata_pixels, height * width, self.names,
                                 self.name)
        return Prediction(paths=self.paths, height=height, width=width, counts=counts,
                          nodata_pixels=sinks.nodata_pixels, polygons=polygons,
                          warnings=messages,
                          transitions=(sinks.transitions if self.change_from is not None
                                       else None))
