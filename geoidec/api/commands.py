"""The ``geoidec train``, ``evaluate`` and ``predict`` commands as functions (the command line
calls :func:`train` and :func:`evaluate`): :func:`train`, :func:`evaluate` and
:func:`predict_file` take the commands' options as arguments and give what the commands
write."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geoidec.config import Config
    from geoidec.data.base import DatasetSpec


def train(
    dataset: str | Path,
    *,
    steps: str | None = None,
    method: str = "idec",
    out: str | Path | None = None,
    from_run: str | Path | None = None,
    eval_on: Sequence[str | Path] = (),
    root: str | Path | None = None,
    preset: str = "auto",
    iterations: int | None = None,
    batch_size: int | None = None,
    tile_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    weights: str | None = None,
    modality: str = "rgb",
    settings: Mapping[str, Any] | Sequence[str] = (),
    overwrite: bool = False,
    quiet: bool = False,
    label: str | None = None,
    step0_from: str | Path | None = None,
    resume: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """``geoidec train`` as a function (the command line calls it): train ``dataset`` (a
    dataset name or YAML) on ``steps``, or one step ``from_run`` an existing model, and
    return the :class:`geoidec.training.run.RunResult` (``run_dir``, ``report``).

    Arguments mirror the command's options; ``settings`` are ``--set`` values, as a mapping
    (``{"train.lr": 0.01}``) or ``key=value`` strings."""
    import sys

    from geoidec.errors import UsageError
    from geoidec.training.start import train_run

    say = echo or (lambda m: print(f"geoidec: {m}", file=sys.stderr))
    sets = [f"{k}={v}" for k, v in settings.items()] if isinstance(settings, Mapping) \
        else list(settings)
    overrides = _overrides(method=method, iterations=iterations, batch_size=batch_size,
                           tile_size=tile_size, seed=seed, device=device, weights=weights,
                           modality=modality, quiet=quiet)
    root = Path(root) if root is not None else None
    spec, cfg = _dataset_and_config(dataset, root, modality, preset, overrides, sets,
                                    iterations, say)
    resume = Path(resume) if resume is not None else None
    out = Path(out) if out is not None else None
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise UsageError(f"--resume {resume} continues that run folder; --out {out} names "
                         "another one (leave --out out)")
    step0 = Path(step0_from) if step0_from is not None else None
    if from_run is not None:
        return _train_from(spec, Path(from_run), cfg, steps=steps, step0=step0, eval_on=eval_on,
                           root=root, modality=modality, out=out, resume=resume,
                           overwrite=overwrite, say=say, label=label)
    if eval_on:
        raise UsageError("--eval-on scores a --from run on other datasets; a run of one "
                         "dataset is scored on its own test split")
    steps = steps or str(len(spec.classes))
    run_dir = resume or out or Path("runs") / (
        f"{spec.name}-{steps.replace('|', '_')}-{cfg.method.name}")
    return train_run(spec, steps, cfg, run_dir, overwrite=overwrite, echo=say, label=label,
                     step0_from=step0, resume=resume)


def _train_from(
    spec: DatasetSpec, from_run: Path, cfg: Config, *, steps: str | None, step0: Path | None,
    eval_on: Sequence[str | Path], root: Path | None, modality: str, out: Path | None,
    resume: Path | None, overwrite: bool, say: Callable[[str], None], label: str | None,
) -> Any:
    """``--from``: one step adding the dataset's new classes to the model of ``from_run``,
    scored on the datasets ``eval_on`` too."""
    from geoidec.data.registry import load_dataset
    from geoidec.errors import UsageError
    from geoidec.training.extend import extend_run

    if steps is not None:
        raise UsageError("--from adds the dataset's new classes in one step; leave "
                         "--steps out")
    if step0 is not None:
        raise UsageError("--from starts from a model; --step0-from cannot be combined "
                         "with it")
    others = [load_dataset(str(d), root, modality) for d in eval_on]
    run_dir = resume or out or Path("runs") / f"{spec.name}-from-{from_run.name}"
    return extend_run(spec, from_run, cfg, run_dir, eval_on=others,
                      overwrite=overwrite, echo=say, label=label, resume=resume)


def _overrides(*, method: str, iterations: int | None, batch_size: int | None,
               tile_size: int | None, seed: int | None, device: str | None,
               weights: str | None, modality: str, quiet: bool) -> dict[str, Any]:
    """The settings :func:`train`'s arguments set, by key (``None``: the preset's value)."""
    overrides = {
        "method.name": method, "train.iterations": iterations, "train.batch_size": batch_size,
        "data.tile_size": tile_size, "train.seed": seed, "train.device": device,
        "model.weights": weights, "data.modality": modality,
        "train.progress": False if quiet else None,
    }
    if iterations is not None:
        overrides["train.iterations_incremental"] = iterations
    return overrides


def _dataset_and_config(
    dataset: str | Path, root: Path | None, modality: str, preset: str,
    overrides: dict[str, Any], sets: list[str], iterations: int | None,
    say: Callable[[str], None],
) -> tuple[DatasetSpec, Config]:
    """The dataset and the run's settings: ``preset`` (``auto``: chosen for the dataset) under
    the dataset's own defaults for it, the arguments' ``overrides`` and the ``--set`` values
    ``sets``; the settings are checked before the dataset is read, so a typo stops first."""
    from geoidec.config import load_config
    from geoidec.data.registry import auto_preset, load_dataset

    load_config("cpu" if preset == "auto" else preset, overrides, sets)  # typos stop here
    spec = load_dataset(str(dataset), root, modality)
    if preset == "auto":
        preset, why = auto_preset(spec)
        say(f"preset {preset} ({why}; another with --preset)")
    name = Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset
    cfg = load_config(preset, overrides, sets, dataset_defaults=spec.preset_overrides.get(name))
    if iterations is not None:
        cfg = cfg.override({"train.epochs": None})
    return spec, cfg


def predict_file(scene: str | Path, model: str | Path, out: str | Path | None = None, *,
                 device: str = "auto", **options: Any) -> Any:
    """``geoidec predict SCENE --model MODEL`` for one scene as a function: the class map
    (default ``SCENE_classes.tif`` beside the scene) and the extras requested in
    ``options`` (``confidence=True``, ``vectors=Path``, ``change_from=...`` a run or
    checkpoint, ``min_area``, ``overwrite``, ...: the keywords of
    :func:`geoidec.inference.predict.predict_scene`); returns its
    :class:`~geoidec.inference.outputs.Prediction` (``paths``, class ``counts``, ...)."""
    from geoidec.checkpoint import load_checkpoint
    from geoidec.devices import resolve_device
    from geoidec.inference.batch import scene_output
    from geoidec.inference.predict import predict_scene

    scene, dev = Path(scene), resolve_device(device)
    if isinstance(options.get("change_from"), str | Path):
        options["change_from"] = load_checkpoint(options["change_from"], map_location=dev)
    target = Path(out) if out is not None else scene_output(scene, scene.parent)
    return predict_scene(load_checkpoint(model, map_location=dev), scene, target, device=dev,
                         **options)


def evaluate(run: str | Path, *, step: int | None = None, split: str = "test",
             root: str | Path | None = None, on: Sequence[str | Path] = (),
             tta: str | None = None, device: str = "auto",
             progress: bool = False) -> dict[str, Any]:
    """``geoidec evaluate RUN`` as a function: each saved step (or ``step``) scored again
    over whole scenes (``tta``: another test-time augmentation than the run's; ``on``:
    other datasets, classes matched by name). Returns what ``--json`` writes: ``{"run",
    "steps": [...]}`` with report.json's score keys per step and ``eval`` (split, tta,
    datasets)."""
    from geoidec.runs.evaluate import evaluate_report

    return evaluate_report(Path(run), step=step, split=split,
                           root=None if root is None else Path(root), device=device,
                           on=[str(d) for d in on], tta=tta, progress=progress)
