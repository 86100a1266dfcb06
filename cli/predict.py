"""`geoidec predict`: whole scenes to GIS-ready class maps (thin; the work is in
geoidec.inference)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def progress_bar(description: str):  # noqa: ANN201 - rich types stay lazy
    """A rich progress bar with a rate column (windows per second) and an ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), transient=False)


def predict(
    scene: Annotated[Path, typer.Argument(help="Input raster (GeoTIFF or any GDAL raster).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder or step_N.pt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output class GeoTIFF (COG).")],
    tile_size: Annotated[int | None, typer.Option(help="Window size (default: training's).")
                         ] = None,
    overlap: Annotated[int | None, typer.Option(help="Window overlap in pixels.")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Map a whole scene into a georeferenced class raster with names and colours.

    Example: `geoidec predict scene.tif --model runs/demo --out scene_classes.tif`
    """
    from geoidec.data.base import DataError
    from geoidec.engine.checkpoint import load_checkpoint
    from geoidec.engine.run import resolve_device
    from geoidec.inference.predict import predict_scene

    if not scene.exists():
        raise DataError(f"input not found: {scene}")
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; pass --overwrite to replace it")
    dev = resolve_device(device)
    ckpt = load_checkpoint(model, map_location=dev)
    if quiet:
        path = predict_scene(ckpt, scene, out, tile=tile_size, overlap=overlap,
                             batch_size=batch_size, device=dev, overwrite=overwrite)
    else:
        import time

        with progress_bar("predicting") as bar:
            task = bar.add_task("windows", total=None, rate="")
            start = time.perf_counter()

            def progress(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=done, total=total, rate=f"{rate:.1f} win/s")

            path = predict_scene(ckpt, scene, out, tile=tile_size, overlap=overlap,
                                 batch_size=batch_size, device=dev, overwrite=overwrite,
                                 progress=progress)
    typer.echo(f"wrote {path} (+ {path.with_suffix('.qml').name}); classes: "
               + ", ".join(c.name for c in ckpt.classes))
