"""The sliding-window predictor's row-band accumulator.

A band of ``tile`` rows by the scene width (at least ``tile``) holds, on the predictor's
device, the weighted sums of the class probabilities of the windows covering each pixel,
the sums of their weights and the AND of their valid masks::

    acc[k, y, x] += w(y, x) * p_k(y, x)        wsum[y, x] += w(y, x)        vand &= valid

Windows come row-major, so once a window starts below the band's top row, the rows above it
can no longer be touched: they are handed out (as views) and the band slides down, moving
the rows still open up and clearing the freed rows. Memory is therefore
``O(K * tile * width)``, independent of the scene height.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["RowBand", "SumBand"]

SumBand = tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(row_start, acc (K, n, width), wsum (n, width), valid (n, width))``."""


class RowBand:
    """Accumulator of ``tile`` scene rows starting at scene row ``top``.

    Args:
        weights: the ``(tile, tile)`` blending window, on ``device``.
        num_classes: ``K``.
        width: scene columns.
        device: where the accumulator lives.
        top: scene row of the band's first row.
        rows: ``(y0, y1)``: only scene rows ``[y0, y1)`` are handed out (rows above ``y0``
            are accumulated but not yielded).
    """

    def __init__(self, weights: torch.Tensor, num_classes: int, width: int,
                 device: torch.device, top: int, rows: tuple[int, int]) -> None:
        t = int(weights.shape[0])
        band_width = max(width, t)  # a scene narrower than the tile still gets full windows
        self.weights = weights
        self.tile = t
        self.width = width
        self.top = top
        self.rows = rows
        self.acc = torch.zeros((num_classes, t, band_width), dtype=torch.float32, device=device)
        self.wsum = torch.zeros((t, band_width), dtype=torch.float32, device=device)
        self.vand = torch.ones((t, band_width), dtype=torch.bool, device=device)

    def add(self, probs: torch.Tensor, valid: torch.Tensor, r0: int, c0: int) -> None:
        """Add one window at scene row ``r0``, column ``c0``: ``probs`` ``(K, tile, tile)``
        weighted by the blending window, its weights, and its ``valid`` mask."""
        t = self.tile
        band_rows = slice(r0 - self.top, r0 - self.top + t)
        cols = slice(c0, c0 + t)
        self.acc[:, band_rows, cols].addcmul_(probs, self.weights)
        self.wsum[band_rows, cols] += self.weights
        self.vand[band_rows, cols] &= valid

    def release(self, stop: int) -> Iterator[SumBand]:
        """Yield the finished rows ``[top, stop)`` that lie in ``rows`` (views, valid until
        the next item is requested), then slide the band down to ``stop``."""
        band = self._finished(stop)
        if band is not None:
            yield band
        self._slide(stop)

    def _finished(self, stop: int) -> SumBand | None:
        """Views of the finished rows [top, stop) within [y0, y1)."""
        y0, y1 = self.rows
        n = stop - self.top
        a, b = min(max(y0 - self.top, 0), n), min(max(y1 - self.top, 0), n)
        if a >= b:
            return None
        w = self.width
        return self.top + a, self.acc[:, a:b, :w], self.wsum[a:b, :w], self.vand[a:b, :w]

    def _slide(self, stop: int) -> None:
        """Slide the band down to ``stop``: rows [n, t) move up, freed rows reset."""
        t, acc, wsum, vand = self.tile, self.acc, self.wsum, self.vand
        n = stop - self.top
        if n < t - n:  # source and destination overlap
            acc[:, : t - n] = acc[:, n:].clone()
            wsum[: t - n] = wsum[n:].clone()
            vand[: t - n] = vand[n:].clone()
        elif n < t:
            acc[:, : t - n] = acc[:, n:]
            wsum[: t - n] = wsum[n:]
            vand[: t - n] = vand[n:]
        acc[:, t - n :] = 0.0
        wsum[t - n :] = 0.0
        vand[t - n :] = True
        self.top = stop
