"""Where the outputs of one prediction go (:class:`OutputPaths`) and what it wrote and found
(:class:`Prediction`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CHANGE_CLASSES", "CHANGE_COLORS", "PNG_SUFFIXES", "OutputPaths", "Prediction",
           "output_paths"]

CHANGE_CLASSES = ("unchanged", "changed")
CHANGE_COLORS = ((220, 220, 220), (215, 25, 28))
PNG_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class OutputPaths:
    """Where each output of one prediction goes (``None``: not requested)."""

    classes: Path
    fmt: str = "COG"
    confidence: Path | None = None
    probabilities: Path | None = None
    change: Path | None = None
    vectors: Path | None = None
    preview: Path | None = None

    def requested(self) -> list[Path]:
        """The class map and every requested extra file."""
        extras = (self.confidence, self.probabilities, self.change, self.vectors, self.preview)
        return [self.classes, *(p for p in extras if p is not None)]

    def sidecars(self) -> list[Path]:
        """Files written beside a COG class map (QGIS style, raster attribute table)."""
        if self.fmt != "COG":
            return []
        return [self.classes.with_suffix(".qml"),
                self.classes.with_name(self.classes.name + ".aux.xml")]


def output_paths(
    out: Path,
    *,
    confidence: bool = False,
    probabilities: bool = False,
    change: bool = False,
    vectors: Path | None = None,
    preview: bool = False,
) -> OutputPaths:
    """Paths of a prediction's outputs: ``OUT_confidence.tif`` etc. beside ``out``.

    An ``out`` ending in ``.png`` (or ``.jpg``/``.jpeg``, replaced by ``.png``) gives a
    palette PNG class map; anything else a COG.
    """
    out = Path(out)
    fmt = "PNG" if out.suffix.lower() in PNG_SUFFIXES else "COG"
    if fmt == "PNG":
        out = out.with_suffix(".png")
    base = out.with_suffix("")

    def extra(tag: str, suffix: str = ".tif") -> Path:
        return base.with_name(f"{base.name}_{tag}{suffix}")

    return OutputPaths(
        classes=out,
        fmt=fmt,
        confidence=extra("confidence") if confidence else None,
        probabilities=extra("probabilities") if probabilities else None,
        change=extra("change") if change else None,
        vectors=Path(vectors) if vectors is not None else None,
        preview=extra("preview", ".png") if preview else None,
    )


@dataclass
class Prediction:
    """What a prediction wrote and found."""

    paths: OutputPaths
    height: int
    width: int
    #: Pixels per class (model order); nodata not included.
    counts: list[int]
    nodata_pixels: int
    #: Polygons written to the GeoPackage (0 when not requested).
    polygons: int = 0
    #: Guard-rail warnings (also logged).
    warnings: list[str] = field(default_factory=list)
    #: With ``change_from``: pixels per (other checkpoint's class, this one's class), shape
    #: (K_old, K), rows and columns in each model's order; nodata not included.
    transitions: np.ndarray | None = None

    @property
    def classes(self) -> Path:
        return self.paths.classes
