"""``geoidec train ... --resume RUN``: a run killed mid-step (SIGKILL after its partial
checkpoint appeared) or stopped between steps continues where it stopped and ends with the
checkpoints and report of an uninterrupted run under the same seed, bit for bit (CPU, one
thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import report_without_timings, run_cli, run_main
from tiny_geotiffs import make_dataset

from geoidec.training.distributed import state_digest
from geoidec.training.run import IncrementalRun

#: 12 iterations per step of 2 accumulated batches, a partial checkpoint every 3: a kill
#: lands inside a step.
ARGS = ["--steps", "2-1", "--iterations", "12", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
        "--device", "cpu", "--method", "idec", "--set", "train.checkpoint_every=3",
        "--set", "train.accumulate=2"]


@pytest.fixture(scope="module")
def dataset_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("resume_data"), train=2, test=1)


@pytest.fixture(scope="module")
def reference(dataset_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    result = run_cli(["train", dataset_yaml, *ARGS, "--out", out])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def _digests(run: Path) -> list[str]:
    return [state_digest(torch.load(p, weights_only=True)["state_dict"])
            for p in sorted((run / "checkpoints").glob("step_*.pt"))]


def _assert_same_run(run: Path, reference: Path) -> None:
    assert report_without_timings(run) == report_without_timings(reference)
    assert _digests(run) == _digests(reference)
    leftovers = [p.name for p in run.rglob("*") if p.name.startswith(".")
                 or p.name.endswith((".partial", ".partial.ckpt", ".tmp"))]
    assert not leftovers, leftovers


def test_killed_mid_step_resumes_where_it_stopped(dataset_yaml: Path, reference: Path,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "geoidec.cli.main", "train",
                             str(dataset_yaml), *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / "checkpoints" / "step_1.partial.ckpt"
    deadline = time.monotonic() + 240
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert partial.exists(), "the run ended before its step 1 partial checkpoint was seen"
    assert not (out / "checkpoints" / "step_1.pt").exists()
    torch.load(partial, weights_only=True)  # complete under its final name

    outcome = run_main(["train", dataset_yaml, *ARGS, "--resume", out], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "continuing from step_1.partial.ckpt" in outcome.stderr
    entry = json.loads((out / "report.json").read_text())["steps"][1]
    assert entry["train"]["resumed_at"] in (3, 6, 9)
    assert entry["train"]["accumulate"] == 2
    _assert_same_run(out, reference)


def test_stopped_between_steps_trains_only_the_rest(dataset_yaml: Path, reference: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    original = IncrementalRun._train_step

    def power_cut_at_step_1(self: IncrementalRun, plan, *args, **kwargs):  # noqa: ANN001, ANN202
        if plan.step == 1:
            raise RuntimeError("power cut")
        return original(self, plan, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(IncrementalRun, "_train_step", power_cut_at_step_1)
        result = run_cli(["train", dataset_yaml, *ARGS, "--out", out])
    assert isinstance(result.exception, RuntimeError)
    step0 = out / "checkpoints" / "step_0.pt"
    before = step0.stat().st_mtime_ns

    outcome = run_main(["train", dataset_yaml, *ARGS, "--resume", out], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "step(s) [0] are finished; continuing with step 1" in outcome.stderr
    assert step0.stat().st_mtime_ns == before  # step 0 was not trained again
    _assert_same_run(out, reference)


def test_resuming_a_finished_run_changes_nothing(dataset_yaml: Path, reference: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file()}
    outcome = run_main(["train", dataset_yaml, *ARGS, "--resume", reference], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "every step is already finished" in outcome.stderr
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file()} == before


def test_sigterm_saves_the_step_and_exits_143(dataset_yaml: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster's pre-emption notice: Lightning stops at the next iteration boundary, the
    step in progress is saved there, and the run resumes from it."""
    args = [*ARGS, "--iterations", "24", "--set", "train.checkpoint_every=4",
            "--set", "train.accumulate=1", "--method", "finetune"]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "geoidec.cli.main", "train",
                             str(dataset_yaml), *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = out / "checkpoints" / "step_0.partial.ckpt"
    deadline = time.monotonic() + 240
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    stopped_at = torch.load(partial, weights_only=True)["global_step"]
    assert 4 <= stopped_at < 24

    outcome = run_main(["train", dataset_yaml, *args, "--resume", out], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]
    entry = json.loads((out / "report.json").read_text())["steps"][0]
    assert entry["train"]["resumed_at"] == stopped_at
    assert not partial.exists()
