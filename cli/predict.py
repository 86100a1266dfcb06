"""`geoidec predict`: whole scenes to GIS-ready class maps (thin; the work is in
geoidec.inference)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from geoidec.cli.options import DEVICE_METAVAR, DEVICES, completer

from geoidec.errors import UsageError
from geoidec.files import refuse_existing
from geoidec.progress import progress_bar, window_progress


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a scheduler's or ``timeout``'s kill) unwinds like Ctrl-C while predicting, so
    the partial outputs are removed before the process exits (status 143)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        from geoidec.cli import STOPPED

        STOPPED["sigterm"] = True
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def latest_run(runs: Path) -> Path:
    """The most recently finished run folder under ``runs`` (a report and a checkpoint)."""

    from geoidec.run_folder import RunFolder

    folders = [RunFolder(p) for p in runs.iterdir()] if runs.is_dir() else []
    done = [run for run in folders if run.is_finished_run()]
    if not done:
        raise UsageError(f"no --model given and no finished run under {runs}/; pass --model "
                        "RUN_FOLDER (or a step_N.pt checkpoint)")
    return max(done, key=lambda run: run.report.stat().st_mtime).path


def predict(
    scenes: Annotated[list[Path], typer.Argument(
        help="Input raster (GeoTIFF, JPEG 2000, PNG, JPEG or any GDAL raster); several "
        "files, a folder or a quoted glob ('scenes/*.tif') predict a batch into --out DIR.",
        show_default=False)],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="Run folder or step_N.pt; default: the most recently "
        "finished run under ./runs.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Class map: .tif (COG) or .png (palette PNG); default "
        "SCENE_classes.tif beside the input. For a batch: the output folder.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Window size (default: training's).")
                         ] = None,
    overlap: Annotated[int | None, typer.Option(help="Window overlap in pixels.")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    device: Annotated[str, typer.Option(
        metavar=DEVICE_METAVAR, autocompletion=completer(lambda: DEVICES),
        help="auto, cpu, cuda or cuda:N.")] = "auto",
    confidence: Annotated[bool, typer.Option(
        "--confidence", help="Also write OUT_confidence.tif (max probability, 0-100).")
                          ] = False,
    probabilities: Annotated[bool, typer.Option(
        "--probabilities", help="Also write OUT_probabilities.tif (0-100, a band per class).")
                             ] = False,
    vectors: Annotated[Path | None, typer.Option(
        help="Also write class polygons to this GeoPackage (batch: a folder of "
        "NAME_classes.gpkg).")] = None,
    simplify: Annotated[float, typer.Option(
        help="Polygon simplification tolerance in CRS units (0: none).")] = 0.0,
    min_area: Annotated[str | None, typer.Option(
        "--min-area", metavar="<AREA|Npx>",
        help="Minimum mapping unit of the polygons: regions smaller than AREA square map "
        "units (e.g. 500 for 500 m²) or N pixels (10px) are merged into a neighbour before "
        "polygonising (the class map is unchanged).")] = None,
    change_from: Annotated[Path | None, typer.Option(
        help="Also write OUT_change.tif: 1 where this older checkpoint (or run) predicts "
        "another class, 0 where the same.")] = None,
    preview: Annotated[bool, typer.Option(
        "--preview", help="Also write OUT_preview.png (input beside the class map).")] = False,
    stac: Annotated[bool, typer.Option(
        "--stac", help="Also write OUT.stac.json: a STAC Item of the map (projection, raster "
        "and classification extensions; every output an asset; the model in properties)."
        )] = False,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="Compile the model with torch.compile first: faster windows after "
        "a compilation of tens of seconds (worth it for large scenes or batches; CPU: "
        "1.2x windows/s for the MobileNetV3 benchmark model, 38 s to compile).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Map whole scenes into georeferenced class rasters with names and colours.

    Examples: `geoidec predict scene.tif --model runs/demo --out scene_classes.tif
    --confidence --vectors scene.gpkg`; `geoidec predict 'tiles/*.tif' --model runs/demo
    --out maps/` (resumes; writes maps/mosaic.vrt); `geoidec predict photo.jpg --model
    runs/demo --out photo.png`.
    """
    with _sigterm_unwinds():
        from geoidec.checkpoint import load_checkpoint
        from geoidec.data.base import DataError
        from geoidec.devices import resolve_device
        from geoidec.inference.batch import find_scenes, is_batch, scene_output
        from geoidec.inference.stac import stac_path

        batch = is_batch([str(s) for s in scenes])
        if not batch and not scenes[0].exists():
            raise DataError(f"input not found: {scenes[0]}")
        if batch:
            if out is None:
                raise UsageError("several inputs need --out DIR (the output folder)")
            if out.is_file():
                raise UsageError(f"--out {out} is a file; several inputs need an output folder")
            found = find_scenes(scenes, out)
        else:
            out = out if out is not None else scene_output(scenes[0], scenes[0].parent)
            refuse_existing(out, stac_path(out) if stac else None, overwrite=overwrite)
        from geoidec.inference.distributed import PredictGroup

        group = PredictGroup.from_env()  # torchrun/srun: the ranks share each scene by rows
        dev = resolve_device(device)
        if group is not None:
            dev = group.device(dev)
            quiet = quiet or not group.is_main
            if not group.is_main:  # rank 0 alone warns and reports
                import logging

                logging.getLogger("geoidec").setLevel(logging.ERROR)
        if model is None:
            model = latest_run(Path("runs"))
            say_main = typer.echo if group is None or group.is_main else (lambda *a, **k: None)
            say_main(f"model: {model} (the most recently finished run under ./runs; "
                     "another with --model)")
        ckpt = load_checkpoint(model, map_location=dev)
        old = load_checkpoint(change_from, map_location=dev) if change_from is not None else None
        if compile_model:
            ckpt.model.compile()
            if old is not None:
                old.model.compile()
        options = dict(tile=tile_size, overlap=overlap, batch_size=batch_size, device=dev,
                       overwrite=overwrite, confidence=confidence, probabilities=probabilities,
                       simplify=simplify, change_from=old, preview=preview, group=group,
                       min_area=min_area)
        say = typer.echo if group is None or group.is_main else (lambda *a, **k: None)
        names = ", ".join(c.name for c in ckpt.classes)
        if batch:
            _predict_batch(ckpt, found, out, vectors, options, quiet, say, stac)
            say(f"classes: {names}")
            return
        from geoidec.inference.predict import predict_scene

        if quiet:
            result = predict_scene(ckpt, scenes[0], out, vectors=vectors, **options)
        else:
            with progress_bar() as bar:
                task = bar.add_task("predicting", total=None, rate="")
                result = predict_scene(ckpt, scenes[0], out, vectors=vectors,
                                       progress=window_progress(bar, task), **options)
        files = [p.name for p in result.paths.sidecars() + result.paths.requested()[1:]]
        extra = f" (+ {', '.join(files)})" if files else ""
        if stac and (group is None or group.is_main):
            extra += f" and {_stac_items(ckpt, [result])[0].name}"
        say(f"wrote {result.classes}{extra}; classes: {names}")
        if old is not None and result.transitions is not None:
            from geoidec.inference.change import pixel_area_m2, transition_table

            say(f"changes from {old.path}:")
            say(transition_table(result.transitions, [c.name for c in old.classes],
                                 [c.name for c in ckpt.classes], pixel_area_m2(scenes[0])))


def _stac_items(ckpt: Any, predictions: list[Any]) -> list[Path]:
    """A STAC Item beside each prediction's class map."""
    from geoidec.inference.stac import write_stac_item
    from geoidec.training.extend import file_digest

    digest = file_digest(Path(ckpt.path))
    return [write_stac_item(p, ckpt, digest) for p in predictions]


def _predict_batch(ckpt: Any, scenes: list[Path], out: Path, vectors: Path | None,
                   options: dict[str, Any], quiet: bool,
                   say: Callable[[str], None] = typer.echo, stac: bool = False) -> None:
    """Predict ``scenes`` into the folder ``out`` and print a summary."""
    from geoidec.data.base import DataError
    from geoidec.inference.batch import predict_many

    if quiet:
        result = predict_many(ckpt, scenes, out, vectors_dir=vectors, **options)
    else:
        with progress_bar() as bar:
            task = bar.add_task("predicting", total=None, rate="")

            def progress(index: int, n: int, scene: Path) -> Callable[[int, int], None]:
                bar.reset(task, total=None, rate="",
                          description=f"[{index + 1}/{n}] {scene.name}")
                return window_progress(bar, task)

            result = predict_many(ckpt, scenes, out, vectors_dir=vectors, progress=progress,
                                  **options)
    mosaic = f"; mosaic: {result.mosaic}" if result.mosaic else ""
    if stac and result.predicted and (options.get("group") is None or options["group"].is_main):
        mosaic += f"; {len(_stac_items(ckpt, result.predicted))} STAC item(s)"
    say(f"{len(result.predicted)} scene(s) predicted, {len(result.skipped)} done "
               f"already, {len(result.failed)} failed, into {out}{mosaic}")
    if result.failed:
        first, reason = result.failed[0]
        raise DataError(f"{len(result.failed)} of {len(scenes)} scene(s) failed, e.g. "
                        f"{first.name}: {reason}")
