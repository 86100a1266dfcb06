"""Hostile inputs: each gives one clear line (no traceback) and writes nothing, or is handled
as docs/reliability.md documents. Every row of that page's table is a test here.

Tiny datasets from tests/tiny_geotiffs.py (48 px scenes), 2-3 iterations of 32 px chips.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import assert_one_line_error, run_cli, run_main
from tiny_geotiffs import image, labels, make_dataset, write_tif

TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
        "--device", "cpu"]


def _train(dataset: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str,
           steps: str = "2-1"):  # noqa: ANN202 - CliOutcome
    return run_main(["train", dataset, "--steps", steps, "--out", out, *TINY, *extra],
                    monkeypatch)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A fresh tiny dataset per test (tests spoil its files)."""
    return make_dataset(tmp_path / "data", train=2, test=1)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 2-1 finetune run and its dataset."""
    root = tmp_path_factory.mktemp("base")
    dataset = make_dataset(root / "data", train=2, test=1)
    out = root / "run"
    result = run_cli(["train", dataset, "--steps", "2-1", "--out", out, "--method", "finetune",
                      *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    return dataset, out


# ------------------------------------------------------------------ broken rasters
def test_truncated_geotiff(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tif = data.parent / "images" / "train_0.tif"
    with open(tif, "r+b") as f:
        f.truncate(tif.stat().st_size // 2)
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "cannot read raster data: train_0.tif",
                          "is the file truncated or corrupt?", code=1)
    assert not (tmp_path / "run").exists()


def test_truncated_label_raster(data: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    tif = data.parent / "labels" / "train_1.tif"
    with open(tif, "r+b") as f:
        f.truncate(tif.stat().st_size - 1000)
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "cannot read scene train_1", str(tif),
                          "is a file truncated or corrupt?", code=1)
    assert not (tmp_path / "run").exists()


def test_corrupt_geotiff(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tif = data.parent / "images" / "test_0.tif"
    tif.write_bytes(os.urandom(4096))
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, f"cannot read {tif} as a raster", "is it a GeoTIFF?", code=1)
    assert not (tmp_path / "run").exists()


def test_label_grid_differs_from_image(data: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_tif(data.parent / "labels" / "train_0.tif", labels(40, seed=0))
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "is 40x40 px but image", "is 48x48 px",
                          "resample the label with nearest neighbour first", code=1)
    assert not (tmp_path / "run").exists()


def test_label_crs_differs_from_image(data: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_tif(data.parent / "labels" / "train_0.tif", labels(48, seed=0), crs="EPSG:32632")
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "has CRS EPSG:32632 but its image has EPSG:32633",
                          "reproject the label", code=1)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------- handled, as documented
UNLISTED = 7


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """One run over odd but valid data: label value 7 (listed nowhere) in train_0 and test_0,
    NaN and inf pixels in the (float32) test image, and train_2 entirely nodata."""
    root = tmp_path_factory.mktemp("odd")
    dataset = make_dataset(root / "data", train=3, test=1)
    for name in ("train_0", "test_0"):
        lab = rasterio.open(root / "data" / "labels" / f"{name}.tif").read()
        lab[0, :8, :8] = UNLISTED
        write_tif(root / "data" / "labels" / f"{name}.tif", lab,
                  x0=rasterio.open(root / "data" / "images" / f"{name}.tif").transform.c)
    test_image = root / "data" / "images" / "test_0.tif"
    with rasterio.open(test_image) as src:
        img, x0 = src.read().astype(np.float32), src.transform.c
    img[:, 40:, :] = np.nan
    img[0, :, 44:] = np.inf
    write_tif(test_image, img, x0=x0)
    empty = root / "data" / "images" / "train_2.tif"
    with rasterio.open(empty) as src:
        x0 = src.transform.c
    write_tif(empty, np.zeros_like(image(labels(48, 2), 2)), x0=x0, nodata=0)
    out = root / "run"
    mp = pytest.MonkeyPatch()
    try:
        outcome = run_main(["train", dataset, "--steps", "2-1", "--out", out, *TINY], mp)
    finally:
        mp.undo()
    assert outcome.code == 0, outcome.stderr
    return dataset, outcome.stderr, out


def _confusion(run: Path, step: int) -> np.ndarray:
    rows = (run / "metrics" / f"step_{step}_confusion.csv").read_text().splitlines()
    return np.array([[int(v) for v in r.split(",")[1:]] for r in rows[1:]])


def test_unlisted_label_values_are_background(odd_run: tuple[Path, str, Path]) -> None:
    _, stderr, run = odd_run
    warning = [line for line in stderr.splitlines() if "not listed" in line]
    assert len(warning) == 1, stderr
    assert f"label value(s) {UNLISTED} (in test_0, train_0)" in warning[0]
    assert "trained and evaluated as background" in warning[0]
    # evaluation counts them as background: the background row of the test matrix holds
    # exactly the 8 x 8 pixels of value 7 (minus none: they are valid imagery)
    assert _confusion(run, 1)[0].sum() == 64


def test_all_nodata_scene_is_skipped_and_counted(odd_run: tuple[Path, str, Path]) -> None:
    _, stderr, run = odd_run
    assert ("training scene train_2 has no valid labelled pixel (all nodata or ignored); no "
            "chip is cut from it") in stderr
    assert "33.3% of the training pixels are nodata or ignored" in stderr
    for step in (0, 1):
        kept = (run / "steps" / f"step_{step}_scenes.txt").read_text().split()
        assert "train_2" not in kept


def test_nan_and_inf_imagery_is_nodata(odd_run: tuple[Path, str, Path]) -> None:
    _, _, run = odd_run
    task = json.loads((run / "task.json").read_text())
    assert all(np.isfinite(v) for values in task["normalization"].values() for v in values)
    # rows 40.. are NaN, columns 44.. are inf in band 0: never evaluated
    assert _confusion(run, 1).sum() == 40 * 44


# --------------------------------------------------------------- wrong requests
def test_step_spec_does_not_fit_the_dataset(data: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _train(data, tmp_path / "run", monkeypatch, steps="2-2")
    assert_one_line_error(outcome, "2-2")
    assert not (tmp_path / "run").exists()


def test_empty_split(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load(data.read_text())
    del doc["images"]["test"], doc["labels"]["test"]
    data.write_text(yaml.safe_dump(doc))
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "dataset 'tiny' has no 'test' scenes; splits found: train (2)",
                          code=1)
    assert not (tmp_path / "run").exists()


def test_step0_from_another_class_schedule(base_run: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, base = base_run
    outcome = _train(dataset, tmp_path / "run", monkeypatch, "--step0-from", str(base),
                     steps="1-2")
    assert_one_line_error(outcome, f"cannot reuse step 0 of {base}: its step 0 learnt other "
                          "classes", code=1)


def test_resume_with_another_method_or_setting(base_run: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, base = base_run
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()}
    outcome = run_main(["train", dataset, "--steps", "2-1", "--resume", base, *TINY,
                        "--method", "idec", "--set", "train.lr=0.5"], monkeypatch)
    assert_one_line_error(outcome, f"cannot resume {base}: it was trained with method finetune "
                          "(this command: idec)", "train.lr=0.02 (this command: 0.5)",
                          "repeat the run's own command with --resume", code=1)
    outcome = run_main(["train", dataset, "--steps", "1-2", "--resume", base, *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, "steps '2-1' (this command: '1-2')", code=1)
    other = dataset.with_name("other.yaml")
    other.write_text(dataset.read_text().replace("name: tiny", "name: other"))
    outcome = run_main(["train", other, "--steps", "2-1", "--resume", base, *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, "dataset tiny (this command: other)", code=1)
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()} == before


def test_resume_of_a_folder_that_is_not_a_run(data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", data, "--steps", "2-1", "--resume", tmp_path, *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, f"cannot resume {tmp_path}: not a geoidec run folder "
                          "(no task.json)", code=1)


def test_corrupt_checkpoint(base_run: tuple[Path, Path], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, base = base_run
    broken = tmp_path / "step_1.pt"
    data = (base / "checkpoints" / "step_1.pt").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    outcome = run_main(["export", broken, "--out", tmp_path / "m.onnx"], monkeypatch)
    assert_one_line_error(outcome, f"{broken} is not a readable geoidec checkpoint", code=1)
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------- where files go
def test_run_folder_without_permission(data: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: refuse as the kernel would
        real_mkdir = Path.mkdir

        def mkdir(self: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            if self.parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        locked.chmod(0o500)
    try:
        outcome = _train(data, locked / "run", monkeypatch)
    finally:
        locked.chmod(0o700)
    assert_one_line_error(outcome, f"cannot write {locked / 'run'}: Permission denied", code=1)
    assert not (locked / "run").exists()


def test_run_folder_under_a_file(data: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("x")
    outcome = _train(data, tmp_path / "notes.txt" / "run", monkeypatch)
    assert_one_line_error(outcome, f"cannot write {tmp_path / 'notes.txt' / 'run'}: Not a "
                          "directory", code=1)


def test_predict_output_without_permission(base_run: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, base = base_run
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "classes.tif"
    scene = dataset.parent / "images" / "test_0.tif"
    outcome = run_main(["predict", scene, "--model", base, "--out", out, "--quiet"],
                       monkeypatch)
    assert_one_line_error(outcome, "notes.txt", code=1)
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_disk_full_while_saving_a_checkpoint(data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import geoidec.files as files

    real_fsync = files.fsync_file

    def full_disk(path: Path) -> None:
        if path.name.startswith(".step_0.pt."):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(files, "fsync_file", full_disk)
    out = tmp_path / "run"
    outcome = _train(data, out, monkeypatch)
    assert_one_line_error(outcome, f"cannot write {out / 'checkpoints' / 'step_0.pt'}: No space "
                          "left on device (disk full: free some space)", code=1)
    assert not list((out / "checkpoints").iterdir())  # no truncated or temporary file


# --------------------------------------------------------------- several processes
def test_unknown_strategy(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _train(data, tmp_path / "run", monkeypatch, "--set", "train.strategy=fsdp")
    assert_one_line_error(outcome, "train.strategy must be one of auto, ddp, not 'fsdp'")
    assert not (tmp_path / "run").exists()


def test_several_nodes_without_a_launcher(data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _train(data, tmp_path / "run", monkeypatch, "--set", "train.num_nodes=2")
    assert_one_line_error(outcome, "train.num_nodes > 1 needs one process per device on every "
                          "node, started by srun or torchrun", code=1)
    assert not (tmp_path / "run").exists()


def test_launcher_started_other_process_count(data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "LOCAL_RANK": "0",
                       "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(key, value)
    outcome = _train(data, tmp_path / "run", monkeypatch)
    assert_one_line_error(outcome, "the launcher started 2 processes but train.devices x "
                          "train.num_nodes = 1 x 1 = 1", code=1)
    assert not (tmp_path / "run").exists()
