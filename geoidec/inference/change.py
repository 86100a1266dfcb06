"""What moved between two class maps: the table ``geoidec predict --change-from`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geoidec.data.scene_reader import open_raster

#: Square metres per hectare.
HECTARE = 10_000.0


def pixel_area_m2(path: Path) -> float | None:
    """Area of one pixel in square metres, when the raster's CRS is projected (None
    otherwise: geographic coordinates or no CRS)."""
    with open_raster(path) as src:
        crs = src.crs
        if crs is None or not crs.is_projected:
            return None
        metres = float(crs.linear_units_factor[1])
        return abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d) * (
            metres * metres)


def hectares(value: float) -> str:
    """Hectares with two decimals, or two significant digits below 0.01 ha (aerial pixels:
    0.0045, not 0.00)."""
    if value >= 0.01 or value <= 0:
        return f"{value:,.2f}"
    decimals = 1 - int(np.floor(np.log10(value)))
    return f"{value:.{decimals}f}"


def transition_table(transitions: np.ndarray, old_names: Sequence[str],
                     new_names: Sequence[str], pixel_area: float | None = None) -> str:
    """Markdown table of the pixels that changed class, largest first: one row per (class in
    the other map, class in this map) pair with different names, with hectares when
    ``pixel_area`` (m²) is known; a last row gives the unchanged pixels."""
    rows = []
    unchanged = 0
    for i, old in enumerate(old_names):
        for j, new in enumerate(new_names):
            n = int(transitions[i, j])
            if not n:
                continue
            if old == new:
                unchanged += n
            else:
                rows.append((n, old, new))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    head = "| from | to | pixels |" + (" hectares |" if pixel_area else "")
    lines = [head, "|---|---|---:|" + ("---:|" if pixel_area else "")]

    def cells(n: int) -> str:
        return f" {n:,} |" + (f" {hectares(n * pixel_area / HECTARE)} |" if pixel_area else "")

    lines += [f"| {old} | {new} |{cells(n)}" for n, old, new in rows]
    lines.append(f"| (unchanged) | |{cells(unchanged)}")
    return "\n".join(lines)
