"""`geoidec train`: a class-incremental task trained step after step (thin; the work is in
geoidec.api.train and geoidec.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from geoidec.cli.options import DeviceOrConfig, Quiet, completer, metavar, preset_names

from geoidec.config import METHOD_NAMES, Modality

Dataset = Annotated[str, typer.Argument(
    help="`isprs` (Potsdam), `vaihingen`, or a dataset YAML describing your GeoTIFFs.")]
Steps = Annotated[str | None, typer.Option(
    "--steps", "-s", help="Task: `4-1`, `2-2-1`, `15-1` (15 then steps of 1) or class "
    "names `forest,water|herbaceous`; default: every class at once (one step).")]
Method = Annotated[str, typer.Option(
    metavar=metavar(METHOD_NAMES), autocompletion=completer(lambda: METHOD_NAMES),
    help="idec, mib, plop, finetune (lower bound) or joint (upper bound).")]
FromRun = Annotated[Path | None, typer.Option(
    "--from", help="Teach this model the dataset's new classes (classes matched by "
    "name; label values the dataset does not list are background): a run folder (its "
    "last step) or a step_N.pt checkpoint. Its training data is not needed.")]
EvalOn = Annotated[list[str] | None, typer.Option(
    "--eval-on", help="With --from: also score on this dataset's test split, every "
    "class it lists matched by name (repeatable); gives old / new / all mIoU.")]
Root = Annotated[Path | None, typer.Option(
    help="Dataset folder (default data/potsdam, data/vaihingen).")]
Out = Annotated[Path | None, typer.Option(help="Run folder (default runs/DATASET-STEPS-METHOD).")]
Preset = Annotated[str, typer.Option(
    metavar=metavar(["auto", "cpu", "satellite", "paper"], "FILE.yaml"),
    autocompletion=completer(preset_names),
    help="auto (satellite for pixels of 2 m or coarser, else cpu), cpu, satellite, paper "
    "(GPU), or a YAML file.")]
Iterations = Annotated[int | None, typer.Option(help="Iterations per step.")]
BatchSize = Annotated[int | None, typer.Option(help="Chips per batch.")]
TileSize = Annotated[int | None, typer.Option(help="Chip size in pixels.")]
Seed = Annotated[int | None, typer.Option(help="Random seed (chips, init, aug).")]
Weights = Annotated[str | None, typer.Option(
    help="Backbone weights: none, imagenet (needs network), torchgeo's by name (e.g. "
    "ResNet50_Weights.SENTINEL2_ALL_MOCO: bands matched by name) or a local .pth file.")]
ModalityOption = Annotated[Modality, typer.Option(help="Potsdam imagery.")]
Settings = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config value: `--set train.lr=0.01` (repeatable).")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing run folder.")]
Label = Annotated[str | None, typer.Option(
    help="Name in comparison tables (default: the method), e.g. idec-no-arcl.")]
Step0From = Annotated[Path | None, typer.Option(
    help="Reuse step 0 of another run (same data, classes, model): methods differ only "
    "from step 1 on.")]
Resume = Annotated[Path | None, typer.Option(
    help="Continue this interrupted run folder: finished steps are kept, the interrupted "
    "step goes on from its last partial checkpoint (repeat the run's own command).")]


def _echo(message: str) -> None:
    typer.echo(f"geoidec: {message}", err=True)


def train(
    dataset: Dataset, steps: Steps = None, method: Method = "idec", from_: FromRun = None,
    eval_on: EvalOn = None, root: Root = None, out: Out = None, preset: Preset = "auto",
    iterations: Iterations = None, batch_size: BatchSize = None, tile_size: TileSize = None,
    seed: Seed = None, device: DeviceOrConfig = None, weights: Weights = None,
    modality: ModalityOption = "rgb", set_: Settings = None, overwrite: Overwrite = False,
    quiet: Quiet = False, label: Label = None, step0_from: Step0From = None,
    resume: Resume = None,
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
