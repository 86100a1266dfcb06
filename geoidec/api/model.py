"""A trained model in memory: :func:`load` (a run folder or checkpoint) gives a :class:`Model`
whose ``predict`` and ``predict_proba`` map ``(bands, H, W)`` arrays (or xarray DataArrays)
exactly as ``geoidec predict`` maps a GeoTIFF's bands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoidec.api.arrays import ArrayReader, is_dataarray, unwrap, wrap
from geoidec.config.choices import Tta
from geoidec.constants import IGNORE_INDEX
from geoidec.errors import DataError


@dataclass(frozen=True)
class ModelClass:
    """One output of a model: its index (model order, background 0), name, code (its value
    in class maps: the dataset YAML's, or the index for datasets without codes) and RGB
    colour."""

    index: int
    name: str
    code: int
    color: tuple[int, int, int]


def load(path: str | Path, *, step: int | None = None, device: str = "auto") -> Model:
    """The model of a run folder (its last step, or ``step``) or of a ``step_N.pt``
    checkpoint, on ``device`` (``auto``: CUDA when present)."""
    from geoidec.checkpoint import load_checkpoint
    from geoidec.devices import resolve_device

    dev = resolve_device(device)
    return Model(load_checkpoint(path, step, map_location=dev), dev)


class Model:
    """A trained geoidec model (see :func:`load`)."""

    def __init__(self, checkpoint: Any, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.device = device
        codes = checkpoint.codes
        self.classes = [ModelClass(i, c.name, codes[i] if codes else i, tuple(c.color))
                        for i, c in enumerate(checkpoint.classes)]
        #: Value of class-map pixels where the input is invalid.
        self.nodata_code = checkpoint.nodata_code if codes is not None else IGNORE_INDEX
        self.bands: int = checkpoint.bands
        self.band_names: list[str] | None = checkpoint.meta.get("band_names")
        self.resolution = checkpoint.meta.get("resolution")
        self.crs = checkpoint.meta.get("crs")

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self.classes)
        return (f"geoidec.Model({self.checkpoint.path}, step {self.checkpoint.meta.get('step')}"
                f", {self.bands} band(s), classes: {names})")

    def _as_array(self, image: np.ndarray | torch.Tensor) -> np.ndarray:  # (C, H, W)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        if image.ndim == 2 and self.bands == 1:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != self.bands:
            names = f" ({', '.join(self.band_names)})" if self.band_names else ""
            raise DataError(f"the model expects an array of shape (bands, height, width) with "
                            f"{self.bands} band(s){names}; got shape {tuple(image.shape)}")
        return image

    def _probabilities(self, image: np.ndarray | torch.Tensor, nodata: float | None,
                       batch_size: int, tta: Tta) -> tuple[np.ndarray, np.ndarray]:
        """Blended probabilities (K, H, W) float32 and the valid mask (H, W)."""
        from geoidec.inference.forward import probability_fn
        from geoidec.inference.predictor_setup import (
            reading_threads,
            resolve_tiling,
            threads_for_forward_only,
        )
        from geoidec.inference.reading import WindowReader
        from geoidec.inference.sliding import SlidingWindowPredictor
        from geoidec.inference.strips import StripPredictor

        array = self._as_array(image)
        reader = ArrayReader(array, nodata, self.checkpoint.normalization.fill)
        height, width = reader.height, reader.width
        k = self.checkpoint.num_classes
        probs = np.zeros((k, height, width), dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        model = self.checkpoint.model.to(self.device).eval()
        forward = probability_fn(model, self.device, amp=self.device.type == "cuda", tta=tta)
        tile, overlap = resolve_tiling(self.checkpoint, None, None, height, width)
        with threads_for_forward_only(self.device) as wrap:
            predictor = SlidingWindowPredictor(
                wrap(forward), num_classes=k, tile=tile, overlap=overlap,
                batch_size=batch_size, device=self.device, readers=reading_threads(self.device))
            read = WindowReader(reader, [self.checkpoint.normalization])
            for row, col, p, v in StripPredictor(predictor).run(read, height, width):
                rows, cols = slice(row, row + p.shape[1]), slice(col, col + p.shape[2])
                probs[:, rows, cols], valid[rows, cols] = p, v
        return probs, valid

    def predict_proba(self, image: Any, *, nodata: float | None = None,
                      batch_size: int = 8, tta: Tta = "none") -> Any:
        """Class probabilities ``(K, H, W)`` float32 in model order (:attr:`classes`) for a
        ``(bands, H, W)`` array of raw band values (as in the training rasters); 0 where
        the input is invalid (non-finite, ``nodata`` or a band's fill value). An xarray
        DataArray gives a DataArray with a ``class`` dimension (the class names) and the
        input's other coordinates, CRS and transform. ``tta``: ``none``, ``flip`` or ``d4``,
        the mean over 4 flips or the 8 symmetries of the square (``geoidec predict --tta``)."""
        values, nodata = unwrap(image, nodata)
        probs, valid = self._probabilities(values, nodata, batch_size, tta)
        probs[:, ~valid] = 0.0
        if not is_dataarray(image):
            return probs
        return wrap(image, probs, "probability", extra=("class", [c.name for c in self.classes]))

    def predict(self, image: Any, *, nodata: float | None = None, batch_size: int = 8,
                tta: Tta = "none") -> Any:
        """The class map ``(H, W)`` uint8 of a ``(bands, H, W)`` array: each pixel's class
        code (:attr:`ModelClass.code`), :attr:`nodata_code` where the input is invalid. An
        xarray DataArray (``rioxarray``'s ``open_rasterio``) gives a DataArray with the
        input's coordinates, CRS and transform, and the nodata code as its nodata; its
        nodata value, when it has one, marks invalid input pixels. ``tta`` as
        :meth:`predict_proba`."""
        from geoidec.inference.layers import code_table

        values, nodata = unwrap(image, nodata)
        probs, valid = self._probabilities(values, nodata, batch_size, tta)
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[~valid] = IGNORE_INDEX
        table = code_table([c.code for c in self.classes], self.nodata_code)
        codes = labels if table is None else table[labels]
        if not is_dataarray(image):
            return codes
        return wrap(image, codes, "class", nodata=self.nodata_code)
