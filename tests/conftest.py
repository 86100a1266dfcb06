"""Shared fixtures: fake ISPRS datasets, the shared real data folder and CLI runners.

Torch runs single-threaded in the tests: on a small shared CPU the default thread pool
spins against other processes, and a 3-iteration training run went from ~4 s to ~40 s.
Subprocesses started with :func:`run_console` get ``OMP_NUM_THREADS=1`` for the same reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FAKES_PATH = Path(__file__).resolve().parent / "data" / "isprs" / "data.py"


def load_fakes() -> ModuleType:
    """``tests/data/isprs/data.py`` (not a package) loaded by file path."""
    name = "geoidec_tests_fake_isprs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FAKES_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fakes() -> ModuleType:
    """The fake ISPRS builders (``make_fake_potsdam``, ``expected_label_indices``, ...)."""
    return load_fakes()


@pytest.fixture(scope="session")
def fake_potsdam(tmp_path_factory: pytest.TempPathFactory, fakes: ModuleType) -> Path:
    """Fake Potsdam release (64 px tiles 2_10, 2_11 train, 2_13 test); treat as read-only."""
    return fakes.make_fake_potsdam(tmp_path_factory.mktemp("fake_isprs"), size=64)


@pytest.fixture(scope="session")
def fake_vaihingen(tmp_path_factory: pytest.TempPathFactory, fakes: ModuleType) -> Path:
    """Fake Vaihingen release (areas 1, 3 train, 2 test; no CRS); treat as read-only."""
    return fakes.make_fake_vaihingen(tmp_path_factory.mktemp("fake_isprs"), size=64)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real small rasters); skipped when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (only present in CI)")
    return SHARED_DATA


# ------------------------------------------------------------------------------- CLI
@dataclass
class CliOutcome:
    """Exit code and captured streams of one CLI invocation."""

    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str]):  # noqa: ANN201 - click's Result
    """Invoke ``geoidec ARGS`` in-process with typer's CliRunner (exceptions are captured in
    ``result.exception``, not turned into one-line messages)."""
    from geoidec.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> CliOutcome:
    """Run the console entry point ``geoidec.cli.main.main()`` in-process, as a user would:
    user errors become one line on stderr and exit status 2."""
    from geoidec.cli import main as cli_main

    monkeypatch.setattr(sys, "argv", ["geoidec", *[str(a) for a in args]])
    monkeypatch.delenv("GEOIDEC_DEBUG", raising=False)
    monkeypatch.setitem(cli_main._DEBUG, "on", False)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliOutcome(code, out.getvalue(), err.getvalue())


def run_console(args: list[str], cwd: Path | None = None) -> CliOutcome:
    """Run the real console script in a subprocess (``python -m geoidec.cli.main``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("GEOIDEC_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "geoidec.cli.main", *[str(a) for a in args]],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )
    return CliOutcome(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(outcome: CliOutcome, *needles: str, code: int = 2) -> str:
    """Exit status ``code`` (2: usage error, the default; 1: data or runtime error), no
    traceback, exactly one ``error:`` line holding every needle."""
    assert outcome.code == code, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, outcome.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def free_port() -> int:
    """A free TCP port on localhost (for torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report_without_timings(run: Path) -> dict:
    """A run's report.json without what differs between identical runs (timings, training
    bookkeeping), for comparing two runs."""
    report = json.loads((run / "report.json").read_text())
    for entry in report["steps"]:
        entry.pop("train")
        entry["eval"].pop("seconds")
    return report


def varied_checkpoint(path: Path, names: list[str]) -> Path:
    """An untrained tiny DeepLabV3 (tile 64, overlap 16, 3 uint8 bands) whose map is varied:
    an untrained map is one class, so BatchNorm sees standardised inputs and the logits are
    scaled and centred until every class wins somewhere."""
    import torch

    from geoidec.checkpoint import save_checkpoint
    from geoidec.data.normalization import Normalization
    from geoidec.models import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", [len(names)], in_channels=3, aspp_channels=16)
    with torch.no_grad():
        model.train()
        for _ in range(20):  # BatchNorm statistics of standardised inputs
            model((torch.rand(4, 3, 64, 64) - 0.45) / 0.25)
        model.eval()
        model.classifier[0].weight.mul_(1000.0)
        mean = model((torch.rand(8, 3, 64, 64) - 0.45) / 0.25).logits.mean((0, 2, 3))
        model.classifier[0].bias.sub_(mean)  # centred logits: every class wins somewhere
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.45,) * 3,
                         std=(0.25,) * 3)
    meta = {"step": 0, "step_classes": names[1:], "bands": 3, "band_names": ["r", "g", "b"],
            "rgb_bands": [0, 1, 2], "normalization": norm.to_dict(), "tile_size": 64,
            "overlap": 16, "resolution": [0.5, 0.5], "crs": "EPSG:32633",
            "classes": [{"index": i, "name": n, "color": [60 * i, 200 - 50 * i, 90]}
                        for i, n in enumerate(names)]}
    return save_checkpoint(path, model.eval(), meta)
