"""Predict a whole scene with a step's checkpoint into a georeferenced class raster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import DataError, Scene, SceneReader
from geoidec.engine.checkpoint import Checkpoint
from geoidec.engine.evaluate import model_reader, probability_fn
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.writers import write_class_raster


def predict_scene(
    checkpoint: Checkpoint,
    scene_path: Path,
    out: Path,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: torch.device | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Sliding-window prediction of ``scene_path`` written as a COG at ``out``.

    The output has the scene's CRS, transform and size, 255 where the input is nodata, a
    colour table, class names and a QGIS style beside it.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder {out.parent}: {exc.strerror}") from None
    device = device or torch.device("cpu")
    if tile is None or tile == checkpoint.tile_size:
        tile = checkpoint.tile_size
        overlap = int(checkpoint.meta.get("overlap", tile // 4)) if overlap is None else overlap
    elif overlap is None:
        overlap = min(int(checkpoint.meta.get("overlap", tile // 4)), tile // 4)
    if not 0 <= overlap < tile:
        raise DataError(f"--overlap must be in [0, {tile}) for tile {tile}, got {overlap}")
    model = checkpoint.model.to(device).eval()
    with SceneReader(Scene(name=Path(scene_path).stem, image=Path(scene_path))) as reader:
        if len(reader.bands) != checkpoint.bands:
            names = checkpoint.meta.get("band_names") or []
            expected = f"{checkpoint.bands} ({', '.join(names)})" if names else checkpoint.bands
            raise DataError(
                f"{scene_path} has {len(reader.bands)} band(s) but the model expects "
                f"{expected}; give an image with the training bands in the same order"
            )
        profile = reader.profile
        predictor = SlidingWindowPredictor(
            probability_fn(model, device, amp=device.type == "cuda"),
            num_classes=checkpoint.num_classes, tile=tile, overlap=overlap,
            batch_size=batch_size, device=device,
        )

        def bands() -> Iterator[tuple[int, np.ndarray]]:
            rows = predictor.run(model_reader(reader, checkpoint.normalization),
                                 reader.height, reader.width, progress)
            for row, probs, valid in rows:
                labels = probs.argmax(axis=0).astype(np.uint8)
                labels[~valid] = IGNORE_INDEX
                yield row, labels

        return write_class_raster(
            out, bands(), height=reader.height, width=reader.width, crs=profile["crs"],
            transform=profile["transform"], class_names=[c.name for c in checkpoint.classes],
            colors=[c.color for c in checkpoint.classes], nodata=IGNORE_INDEX,
            overwrite=overwrite,
        )
