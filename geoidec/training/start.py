"""Starting a run: ``geoidec train`` (:func:`train_run`), ``--resume`` of an interrupted run
(:func:`resume_state`), and the run folder, created (or, with ``--overwrite``, emptied) by
rank 0 only once every input has been read and checked (:func:`start`), so a bad setting or
input leaves no run folder behind and never deletes a good one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from geoidec.config import Config
from geoidec.data.base import DatasetSpec
from geoidec.devices import barrier
from geoidec.errors import UsageError
from geoidec.files import write_error
from geoidec.tasks import TaskSchedule
from geoidec.training.distributed import init_process_group
from geoidec.training.resume import ResumeState
from geoidec.training.run import IncrementalRun, RunResult


def prepare_run_dir(out: Path, overwrite: bool, create: bool = True) -> Path:
    """Create the run folder; refuse to reuse a non-empty one without ``overwrite``.

    ``create=False`` only checks (the other processes of a DDP launch: rank 0 creates it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"run folder {out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"run folder {out} exists and is not empty; pass --overwrite or "
                            "choose another --out, or --resume it")
        if create:
            shutil.rmtree(out)
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".geoidec-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise write_error(out, exc) from None
    return out


def train_run(
    dataset: DatasetSpec,
    steps: str,
    config: Config,
    out: Path,
    *,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    label: str | None = None,
    step0_from: Path | None = None,
    resume: Path | None = None,
) -> RunResult:
    """Parse the schedule, read and check every input, prepare the run folder and run every
    step.

    ``label`` names the run in comparison tables (default: the method's name), e.g.
    ``idec-no-arcl`` for an ablation. ``step0_from`` reuses step 0 of another run with the
    same data, classes and architecture (methods differ only from step 1 on). ``resume``
    continues the interrupted run in that folder (``out`` is ignored): the same dataset,
    steps, method and settings are required.
    """
    schedule = TaskSchedule.parse(steps, dataset.class_names)
    state = resume_state(resume, overwrite)
    if state is not None:
        state.check(dataset, schedule, config)
        assert resume is not None  # resume_state() returns None without --resume
        out = Path(resume)
        label = label or (state.report or {}).get("label")
    # check every setting and read every input before touching the run folder (an
    # --overwrite of a good run with a bad setting or input must not delete it)
    run = IncrementalRun(dataset, schedule, config, Path(out), echo, label, step0_from, state)
    return start(run, Path(out), overwrite)


def resume_state(resume: Path | None, overwrite: bool) -> ResumeState | None:
    """The interrupted run ``--resume`` continues (None without it)."""
    if resume is None:
        return None
    if overwrite:
        raise UsageError("--resume continues a run; it cannot be combined with --overwrite")
    return ResumeState.load(resume)


def start(run: IncrementalRun, out: Path, overwrite: bool) -> RunResult:
    """Read and check every input of ``run``, then create its folder (rank 0; an existing
    one only with ``overwrite``, unless resuming) and run it."""
    state = run.resume
    if state is None:
        prepare_run_dir(out, overwrite, create=False)
    init_process_group(run.launch)
    run.prepare()
    if state is None:
        barrier()  # every process has checked the folder before rank 0 creates it
        # only rank 0 touches it now: another rank checking again could see rank 0's
        # write probe and take the new folder for a non-empty old one
        run.run_dir = prepare_run_dir(out, overwrite) if run.writes else Path(out)
        barrier()
    return run.run()


__all__ = ["prepare_run_dir", "resume_state", "start", "train_run"]
