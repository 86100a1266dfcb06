"""`geoidec predict`: whole scenes to GIS-ready class maps (thin; the work is in
geoidec.inference: inputs, outputs and the launcher's processes in inference/launch.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from geoidec.cli.options import TTA_NAMES, Device, TtaOption
from geoidec.cli.sigterm import sigterm_unwinds

from geoidec.progress import progress_bar, window_progress

Say = Callable[[str], None]

Scenes = Annotated[list[Path], typer.Argument(
    help="Input raster (GeoTIFF, JPEG 2000, PNG, JPEG or any GDAL raster); several "
    "files, a folder or a quoted glob ('scenes/*.tif') predict a batch into --out DIR.",
    show_default=False)]
Model = Annotated[Path | None, typer.Option(
    "--model", "-m", help="Run folder or step_N.pt; default: the most recently "
    "finished run under ./runs.")]
Out = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Class map: .tif (COG) or .png (palette PNG); default "
    "SCENE_classes.tif beside the input. For a batch: the output folder.")]
TileSize = Annotated[int | None, typer.Option(help="Window size (default: training's).")]
Overlap = Annotated[int | None, typer.Option(help="Window overlap in pixels.")]
BatchSize = Annotated[int, typer.Option(help="Windows per forward pass.")]
Confidence = Annotated[bool, typer.Option(
    "--confidence", help="Also write OUT_confidence.tif (max probability, 0-100).")]
Probabilities = Annotated[bool, typer.Option(
    "--probabilities", help="Also write OUT_probabilities.tif (0-100, a band per class).")]
Vectors = Annotated[Path | None, typer.Option(
    help="Also write class polygons to this GeoPackage (batch: a folder of "
    "NAME_classes.gpkg).")]
Simplify = Annotated[float, typer.Option(
    help="Polygon simplification tolerance in CRS units (0: none).")]
MinArea = Annotated[str | None, typer.Option(
    "--min-area", metavar="<AREA|Npx>",
    help="Minimum mapping unit of the polygons: regions smaller than AREA square map "
    "units (e.g. 500 for 500 m²) or N pixels (10px) are merged into a neighbour before "
    "polygonising (the class map is unchanged).")]
ChangeFrom = Annotated[Path | None, typer.Option(
    help="Also write OUT_change.tif: 1 where this older checkpoint (or run) predicts "
    "another class, 0 where the same.")]
Preview = Annotated[bool, typer.Option(
    "--preview", help="Also write OUT_preview.png (input beside the class map).")]
Stac = Annotated[bool, typer.Option(
    "--stac", help="Also write OUT.stac.json: a STAC Item of the map (projection, raster "
    "and classification extensions; every output an asset; the model in properties).")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="Compile the model with torch.compile first: faster windows after "
    "a compilation of tens of seconds (worth it for large scenes or batches; CPU: "
    "1.2x windows/s for the MobileNetV3 benchmark model, 38 s to compile).")]
Overwrite = Annotated[bool, typer.Option(help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar.")]


def predict(
    scenes: Scenes, model: Model = None, out: Out = None, tile_size: TileSize = None,
    overlap: Overlap = None, batch_size: BatchSize = 8, device: Device = "auto",
    confidence: Confidence = False, probabilities: Probabilities = False,
    vectors: Vectors = None, simplify: Simplify = 0.0, min_area: MinArea = None,
    change_from: ChangeFrom = None, preview: Preview = False, stac: Stac = False,
    compile_model: Compile = False, tta: TtaOption = None, overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Map whole scenes into georeferenced class rasters with names and colours.

    Examples: `geoidec predict scene.tif --model runs/demo --out scene_classes.tif
    --confidence --vectors scene.gpkg`; `geoidec predict 'tiles/*.tif' --model runs/demo
    --out maps/` (resumes; writes maps/mosaic.vrt); `geoidec predict photo.jpg --model
    runs/demo --out photo.png`.
    """
    with sigterm_unwinds():
        from geoidec.config.choices import match_choice
        from geoidec.inference import launch

        tta = match_choice(tta or "none", TTA_NAMES, "--tta")

        targets = launch.prediction_targets(scenes, out, stac=stac, overwrite=overwrite)
        process = launch.join_launch(device, quiet)  # torchrun/srun: the ranks share scenes
        say: Say = typer.echo if process.is_main else _silent
        if model is None:
            model = launch.latest_run(Path("runs"))
            say(f"model: {model} (the most recently finished run under ./runs; another with "
                "--model)")
        ckpt, old = launch.load_models(model, change_from, process.device,
                                       compile_model=compile_model)
        options = dict(tile=tile_size, overlap=overlap, batch_size=batch_size,
                       device=process.device, overwrite=overwrite, confidence=confidence,
                       probabilities=probabilities, simplify=simplify, change_from=old,
                       preview=preview, group=process.group, min_area=min_area, tta=tta)
        write_stac = stac and process.is_main  # rank 0 alone writes the STAC items
        if targets.batch:
            _predict_batch(ckpt, targets.scenes, targets.out, vectors, options, process.quiet,
                           say, write_stac)
            say(f"classes: {_names(ckpt)}")
        else:
            _predict_one(ckpt, targets.scenes[0], targets.out, vectors, options,
                         process.quiet, say, write_stac)


def _silent(message: str) -> None:
    """``say`` of the ranks other than 0."""


def _names(ckpt: Any) -> str:
    return ", ".join(c.name for c in ckpt.classes)


def _stac_items(ckpt: Any, predictions: list[Any]) -> list[Path]:
    """A STAC Item beside each prediction's class map."""
    from geoidec.files import file_digest
    from geoidec.inference.stac import write_stac_item

    digest = file_digest(Path(ckpt.path))
    return [write_stac_item(p, ckpt, digest) for p in predictions]


def _predict_one(ckpt: Any, scene: Path, out: Path, vectors: Path | None,
                 options: dict[str, Any], quiet: bool, say: Say, stac: bool) -> None:
    """Predict ``scene`` into the class map ``out`` and print what was written (and, with
    ``change_from``, the class transitions)."""
    from geoidec.inference.predict import predict_scene

    if quiet:
        result = predict_scene(ckpt, scene, out, vectors=vectors, **options)
    else:
        with progress_bar() as bar:
            task = bar.add_task("predicting", total=None, rate="")
            result = predict_scene(ckpt, scene, out, vectors=vectors,
                                   progress=window_progress(bar, task), **options)
    files = [p.name for p in result.paths.sidecars() + result.paths.requested()[1:]]
    extra = f" (+ {', '.join(files)})" if files else ""
    if stac:
        extra += f" and {_stac_items(ckpt, [result])[0].name}"
    say(f"wrote {result.classes}{extra}; classes: {_names(ckpt)}")
    old = options["change_from"]
    if old is not None and result.transitions is not None:
        from geoidec.inference.change import pixel_area_m2, transition_table

        say(f"changes from {old.path}:")
        say(transition_table(result.transitions, [c.name for c in old.classes],
                             [c.name for c in ckpt.classes], pixel_area_m2(scene)))


def _predict_batch(ckpt: Any, scenes: list[Path], out: Path, vectors: Path | None,
                   options: dict[str, Any], quiet: bool, say: Say, stac: bool) -> None:
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
    if stac and result.predicted:
        mosaic += f"; {len(_stac_items(ckpt, result.predicted))} STAC item(s)"
    say(f"{len(result.predicted)} scene(s) predicted, {len(result.skipped)} done "
        f"already, {len(result.failed)} failed, into {out}{mosaic}")
    if result.failed:
        first, reason = result.failed[0]
        raise DataError(f"{len(result.failed)} of {len(scenes)} scene(s) failed, e.g. "
                        f"{first.name}: {reason}")
