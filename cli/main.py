"""The ``geoidec`` command line: thin typer commands over the library, heavy imports lazy.

User errors print one line starting with ``error:``: exit status 2 for usage errors (unknown
options, bad values, typos in choices, existing outputs without --overwrite), 1 for data and
runtime errors (unreadable rasters, mismatched grids, full disk); ``--debug`` (or
GEOIDEC_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from geoidec.cli.options import DEVICE_METAVAR, DEVICES, completer, metavar, preset_names

from geoidec.config import METHOD_NAMES, Modality, Split
from geoidec.errors import DATA_EXIT, USAGE_EXIT, UsageError

app = typer.Typer(
    name="geoidec",
    help="Class-incremental semantic segmentation for remote sensing (IDEC), with GIS outputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode="markdown",
)
samples_app = typer.Typer(help="Write bundled sample data.", no_args_is_help=True)
app.add_typer(samples_app, name="samples")

_DEBUG = {"on": bool(os.environ.get("GEOIDEC_DEBUG"))}


def _show_version(value: bool) -> None:
    if value:
        from geoidec import __version__

        typer.echo(f"geoidec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_show_version,
        help="Print geoidec's version and exit.")] = False,
) -> None:
    if debug:
        _DEBUG["on"] = True


def _echo(message: str) -> None:
    typer.echo(f"geoidec: {message}", err=True)


@app.command()
def train(
    dataset: Annotated[str, typer.Argument(
        help="`isprs` (Potsdam), `vaihingen`, or a dataset YAML describing your GeoTIFFs.")],
    steps: Annotated[str | None, typer.Option(
        "--steps", "-s", help="Task: `4-1`, `2-2-1`, `15-1` (15 then steps of 1) or class "
        "names `forest,water|herbaceous`; default: every class at once (one step).")] = None,
    method: Annotated[str, typer.Option(
        metavar=metavar(METHOD_NAMES), autocompletion=completer(lambda: METHOD_NAMES),
        help="idec, mib, plop, finetune (lower bound) or joint (upper bound).")] = "idec",
    from_: Annotated[Path | None, typer.Option(
        "--from", help="Teach this model the dataset's new classes (classes matched by "
        "name; label values the dataset does not list are background): a run folder (its "
        "last step) or a step_N.pt checkpoint. Its training data is not needed.")] = None,
    eval_on: Annotated[list[str] | None, typer.Option(
        "--eval-on", help="With --from: also score on this dataset's test split, every "
        "class it lists matched by name (repeatable); gives old / new / all mIoU.")] = None,
    root: Annotated[Path | None, typer.Option(
        help="Dataset folder (default data/potsdam, data/vaihingen).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Run folder (default runs/DATASET-STEPS-METHOD).")] = None,
    preset: Annotated[str, typer.Option(
        metavar=metavar(["auto", "cpu", "satellite", "paper"], "FILE.yaml"),
        autocompletion=completer(preset_names),
        help="auto (satellite for pixels of 2 m or coarser, else cpu), cpu, satellite, paper "
        "(GPU), or a YAML file.")] = "auto",
    iterations: Annotated[int | None, typer.Option(help="Iterations per step.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Chips per batch.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Chip size in pixels.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (chips, init, aug).")] = None,
    device: Annotated[str | None, typer.Option(
        metavar=DEVICE_METAVAR, autocompletion=completer(lambda: DEVICES),
        help="auto, cpu, cuda or cuda:N.")] = None,
    weights: Annotated[str | None, typer.Option(
        help="Backbone weights: none, imagenet (needs network), torchgeo's by name (e.g. "
        "ResNet50_Weights.SENTINEL2_ALL_MOCO: bands matched by name) or a local .pth "
        "file.")] = None,
    modality: Annotated[Modality, typer.Option(help="Potsdam imagery.")] = "rgb",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config value: `--set train.lr=0.01` (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    label: Annotated[str | None, typer.Option(
        help="Name in comparison tables (default: the method), e.g. idec-no-arcl.")] = None,
    step0_from: Annotated[Path | None, typer.Option(
        help="Reuse step 0 of another run (same data, classes, model): methods differ only "
        "from step 1 on.")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue this interrupted run folder: finished steps are kept, the interrupted "
        "step goes on from its last partial checkpoint (repeat the run's own command).")
    ] = None,
) -> None:
    """Train step after step on a class-incremental task, evaluate and checkpoint each step.

    Example: `geoidec train isprs --root data/potsdam --steps 4-1 --preset cpu --out runs/demo`

    Several GPUs: `torchrun --nproc_per_node 4 -m geoidec.cli.main train ... --set
    train.devices=4`; an interrupted run: the same command with `--resume runs/demo`.
    """
    from geoidec.api import train as train_api
    from geoidec.runs.reports import steps_table

    result = train_api(
        dataset, steps=steps, method=method, out=out, from_run=from_, eval_on=eval_on or (),
        root=root, preset=preset, iterations=iterations, batch_size=batch_size,
        tile_size=tile_size, seed=seed, device=device, weights=weights, modality=modality,
        settings=set_ or (), overwrite=overwrite, quiet=quiet, label=label,
        step0_from=step0_from, resume=resume, echo=_echo)
    if result.primary:
        typer.echo(steps_table(result.report))
        typer.echo(f"run folder: {result.run_dir}  (report.md, report.json, checkpoints/)")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `geoidec train`.")],
    step: Annotated[int | None, typer.Option(help="Only this step (default: every step).")] = None,
    split: Annotated[Split, typer.Option(help="Split to evaluate.")] = "test",
    root: Annotated[Path | None, typer.Option(help="Dataset folder, if it moved.")] = None,
    device: Annotated[str, typer.Option(
        metavar=DEVICE_METAVAR, autocompletion=completer(lambda: DEVICES),
        help="auto, cpu, cuda or cuda:N.")] = "auto",
    on: Annotated[list[str] | None, typer.Option(
        "--on", help="Score on this dataset's test split instead (repeatable): every class "
        "it lists, matched to the model's by name.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Evaluate a run's saved steps again over whole scenes and print the table.

    Example: `geoidec evaluate runs/demo --step 1`, `geoidec evaluate runs/v2 --on old.yaml`
    """
    from geoidec.runs.evaluate import evaluate_run

    typer.echo(evaluate_run(run, step=step, split=split, root=root, device=device,
                            on=on or (), progress=not quiet))


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (methods, seeds, ablations).")],
    out: Annotated[Path | None, typer.Option(help="Also write the table to this file.")] = None,
) -> None:
    """Side-by-side table of runs' final step: old/new/all mIoU and IoU per class; runs of the
    same method on the same task are pooled as mean ± std over seeds.

    Example: `geoidec compare runs/finetune runs/joint runs/mib runs/plop runs/idec`
    """
    from geoidec.files import write_text
    from geoidec.runs.compare import compare_runs

    table = compare_runs(runs)
    if out is not None:
        write_text(out, table)
    typer.echo(table)


@samples_app.command("isprs")
def samples_isprs(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")] = Path(
        "data/potsdam_sample"),
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    size: Annotated[int, typer.Option(help="Tile size in pixels.")] = 512,
    resolution: Annotated[float, typer.Option(help="Pixel size in metres (real: 0.05).")
                          ] = 0.05,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty folder.")] = False,
) -> None:
    """Write a synthetic ISPRS-Potsdam-like sample (RGB, IRRG, RGBIR, DSM, colour labels).

    Example: `geoidec samples isprs --out data/potsdam_sample --resolution 0.15`
    """
    from geoidec.synthetic import generate_isprs_sample

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite or another --out")
    path = generate_isprs_sample(out, seed=seed, size=size, resolution=resolution)
    typer.echo(f"wrote a synthetic Potsdam sample to {path}; train with: "
               f"geoidec train isprs --root {path} --steps 4-1")


def _register() -> None:
    from geoidec.cli.predict import predict

    app.command()(predict)
    from geoidec.cli.info import info

    app.command()(info)
    from geoidec.cli.export import export

    app.command()(export)


_register()


def main() -> None:
    """Console entry point: one-line errors, exit status 2 for usage errors (the command
    line or settings), 1 for data and runtime errors (geoidec/errors.py)."""
    from geoidec.cli import STOPPED

    try:
        code = app(prog_name="geoidec", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        if STOPPED["sigterm"]:  # predict unwound on SIGTERM
            _sigterm_unwound()
        typer.echo("geoidec: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if STOPPED["sigterm"]:
            _sigterm_unwound()
        if type(exc).__name__ != "SIGTERMException":  # Lightning's, raised between batches
            raise
        typer.echo("geoidec: stopped by SIGTERM at an iteration boundary (saved); continue with "
                   "the same command and --resume RUN", err=True)
        sys.exit(143)
    except Exception as exc:  # noqa: BLE001 - user errors are classified below
        if _is_click(exc, "NoArgsIsHelpError"):  # `geoidec` or `geoidec samples` alone: the help
            typer.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) else str(exc))
            sys.exit(USAGE_EXIT)
        if _is_click(exc, "UsageError"):  # click's: unknown option, bad choice, missing argument
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "geoidec"
            typer.echo(f"error: {' '.join(exc.format_message().split())} (see '{where} "
                       "--help')", err=True)
            sys.exit(USAGE_EXIT)
        message = _user_message(exc)
        if _DEBUG["on"] or message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        usage = isinstance(exc, UsageError | FileExistsError)
        sys.exit(USAGE_EXIT if usage else DATA_EXIT)
    if code == 130:  # typer turns Ctrl-C (and predict's SIGTERM) into exit code 130
        if STOPPED["sigterm"]:
            _sigterm_unwound()
        typer.echo("geoidec: interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


def _sigterm_unwound() -> None:
    typer.echo("geoidec: stopped by SIGTERM; nothing was left under a final name; run the "
               "same command again", err=True)
    sys.exit(143)


def _is_click(exc: BaseException, name: str) -> bool:
    """``exc`` is click's exception ``name`` or derives from it (whether typer vendors click
    or not; geoidec's own UsageError is not click's)."""
    return any(t.__name__ == name and "click" in t.__module__ for t in type(exc).__mro__)


def _user_message(exc: Exception) -> str | None:
    """The one-line message of a user error (bad data, settings, paths, full disk, unreadable
    raster); None for a bug, which keeps its traceback."""
    import errno

    if _is_user_error(exc):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                                  errno.EACCES, errno.EPERM, errno.ENOTDIR):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    if _is_raster_error(exc):
        from geoidec.training.preflight import raster_error_reason

        return (f"cannot read raster data: {raster_error_reason(exc)}; is the file truncated "
                "or corrupt?")
    return None


def _is_raster_error(exc: Exception) -> bool:
    """rasterio/GDAL read errors (truncated or corrupt files) raised while reading windows."""
    from geoidec.training.preflight import is_raster_error

    return is_raster_error(exc)


def _is_user_error(exc: Exception) -> bool:
    from geoidec.config import ConfigError

    names = {"DataError", "TaskSpecError", "WeightsError"}
    return (
        isinstance(exc, UsageError | ConfigError | FileExistsError | PermissionError)
        or any(t.__name__ in names for t in type(exc).__mro__)
    )


if __name__ == "__main__":
    main()
