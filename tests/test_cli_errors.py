"""User errors on the command line: one line on stderr, no traceback; exit status 2 for
usage errors (the command line or settings), 1 for data and runtime errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_console, run_main

from geoidec.data.base import DataError

TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 3-band checkpoint written with the library's own saver (no training)."""
    from geoidec.checkpoint import save_checkpoint
    from geoidec.data.normalization import Normalization
    from geoidec.models import build_model

    model = build_model("mobilenet_v3_small", [3], in_channels=3, aspp_channels=16)
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.5,) * 3, std=(0.25,) * 3)
    meta = {
        "step": 0, "step_classes": ["a", "b"], "bands": 3, "band_names": ["r", "g", "b"],
        "rgb_bands": [0, 1, 2], "normalization": norm.to_dict(), "tile_size": 32,
        "overlap": 8, "resolution": [1.0, 1.0], "crs": None,
        "classes": [{"index": i, "name": n, "color": [i * 50, 0, 0]}
                    for i, n in enumerate(["background", "a", "b"])],
    }
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "step_0.pt", model, meta)


def test_missing_dataset_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", "isprs", "--root", tmp_path / "nothing", "--steps", "4-1",
                        "--out", tmp_path / "run", *TINY], monkeypatch)
    assert_one_line_error(outcome, "geoidec samples isprs", "2_Ortho_RGB", code=1)
    assert not (tmp_path / "run").exists()


def test_missing_dataset_root_console_script(tmp_path: Path) -> None:
    """The real entry point, in a fresh interpreter."""
    outcome = run_console(["train", "isprs", "--root", tmp_path / "nothing", "--steps", "4-1",
                           "--out", tmp_path / "run", "--quiet"])
    assert_one_line_error(outcome, "geoidec samples isprs", code=1)
    assert outcome.stdout == ""


def test_debug_shows_the_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="geoidec samples isprs"):
        run_main(["--debug", "train", "isprs", "--root", tmp_path / "nothing",
                  "--steps", "4-1", "--out", tmp_path / "run"], monkeypatch)


@pytest.mark.parametrize("steps", ["3-3", "5-1", "0-5", "2-x", "building|car"])
def test_bad_step_spec(fake_potsdam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       steps: str) -> None:
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", steps,
                        "--out", tmp_path / "run", *TINY], monkeypatch)
    assert_one_line_error(outcome, steps)
    assert not (tmp_path / "run").exists()


def test_unknown_method(fake_potsdam: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--method", "finetuned", "--out", tmp_path / "run", *TINY], monkeypatch)
    assert_one_line_error(outcome, "unknown method 'finetuned'", "did you mean 'finetune'",
                          "joint")


def test_unknown_method_keeps_an_existing_run(
    fake_potsdam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text("{}")
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--method", "nosuch", "--out", run, "--overwrite", *TINY], monkeypatch)
    assert_one_line_error(outcome, "unknown method")
    assert (run / "report.json").is_file()


def test_unknown_preset(fake_potsdam: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--preset", "turbo", "--out", tmp_path / "run"], monkeypatch)
    assert_one_line_error(outcome, "unknown preset 'turbo'", "cpu", "paper")


def test_set_unknown_key(fake_potsdam: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--out", tmp_path / "run", "--set", "bad.key=1"], monkeypatch)
    assert_one_line_error(outcome, "'bad'", "model", "train")
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--out", tmp_path / "run", "--set", "train.itrations=1"], monkeypatch)
    assert_one_line_error(outcome, "'itrations'", "train.iterations")
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--out", tmp_path / "run", "--set", "train.iterations=many"],
                       monkeypatch)
    assert_one_line_error(outcome, "train.iterations", "integer")
    assert not (tmp_path / "run").exists()


def test_unknown_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", "vaihingenn", "--steps", "4-1", "--out", tmp_path / "r"],
                       monkeypatch)
    assert_one_line_error(outcome, "unknown dataset 'vaihingenn'", "vaihingen")


def test_predict_missing_input(tiny_checkpoint: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["predict", tmp_path / "absent.tif", "--model", tiny_checkpoint,
                        "--out", tmp_path / "o.tif", "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "absent.tif", "not found", code=1)
    assert not (tmp_path / "o.tif").exists()


def test_predict_unknown_tta(tiny_checkpoint: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["predict", tmp_path / "absent.tif", "--model", tiny_checkpoint,
                        "--out", tmp_path / "o.tif", "--tta", "flips", "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "--tta must be one of none, flip, d4", "'flip'")
    assert list(tmp_path.iterdir()) == []


def test_predict_non_raster(tiny_checkpoint: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a raster\n")
    outcome = run_main(["predict", text, "--model", tiny_checkpoint,
                        "--out", tmp_path / "o.tif", "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "notes.txt", "raster", code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_predict_missing_model(fake_potsdam: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    outcome = run_main(["predict", scene, "--model", tmp_path / "nomodel.pt",
                        "--out", tmp_path / "o.tif", "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "nomodel.pt", code=1)
    empty_run = tmp_path / "emptyrun"
    empty_run.mkdir()
    outcome = run_main(["predict", scene, "--model", empty_run,
                        "--out", tmp_path / "o.tif", "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "no checkpoint", code=1)


def test_predict_not_a_checkpoint(fake_potsdam: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x00garbage")
    outcome = run_main(["predict", scene, "--model", fake, "--out", tmp_path / "o.tif",
                        "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "model.pt", "checkpoint", code=1)


def test_evaluate_not_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["evaluate", tmp_path], monkeypatch)
    assert_one_line_error(outcome, "not a geoidec run folder", code=1)


def test_samples_refuses_a_non_empty_folder(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("x")
    outcome = run_main(["samples", "isprs", "--out", tmp_path, "--size", "64"], monkeypatch)
    assert_one_line_error(outcome, "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(("setting", "needles"), [
    ("method.pseudo_label_mode=fixd", ["dynamic, fixed", "did you mean 'fixed'"]),
    ("method.classification=bec", ["ce, bce"]),
    ("data.protocol=disjointed", ["overlapped, disjoint"]),
    ("train.precision=fp16", ["auto, 32, 16, bf16"]),
])
def test_choice_typo_stops_before_any_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, needles: list[str]
) -> None:
    # the dataset folder does not exist: the settings are checked first
    outcome = run_main(["train", "isprs", "--root", tmp_path / "nothing", "--steps", "4-1",
                        "--out", tmp_path / "run", *TINY, "--set", setting], monkeypatch)
    assert_one_line_error(outcome, setting.split("=")[0], *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["train", "isprs", "--bogus"], ["No such option: --bogus", "see 'geoidec train --help'"]),
    (["train"], ["Missing argument 'dataset'", "see 'geoidec train --help'"]),
    (["evaluate", "runs/x", "--split", "vall"], ["'vall' is not one of 'test', 'val', 'train'",
                                                 "see 'geoidec evaluate --help'"]),
    (["predict"], ["Missing argument", "see 'geoidec predict --help'"]),
    (["frobnicate"], ["No such command 'frobnicate'", "see 'geoidec --help'"]),
])
def test_usage_errors_are_one_line_with_status_2(args: list[str], needles: list[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """click's usage errors (unknown option or command, bad choice, missing argument) are
    one `error:` line naming the help to read, not a box, with the usage exit status."""
    outcome = run_main(args, monkeypatch)
    assert_one_line_error(outcome, *needles, code=2)
    assert "╭" not in outcome.stderr and "Usage:" not in outcome.stderr


def test_version_and_no_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoidec import __version__

    for flag in ("--version", "-V"):
        outcome = run_main([flag], monkeypatch)
        assert (outcome.code, outcome.stdout.strip()) == (0, f"geoidec {__version__}")
    alone = run_main([], monkeypatch)  # the help, with the usage status (nothing was run)
    assert alone.code == 2 and "train" in alone.stdout and "predict" in alone.stdout


def test_help_lists_the_choices_and_the_shell_completes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Options taking one of a few names show them in --help and complete in the shell."""
    import typer.main
    from conftest import run_cli
    from geoidec.cli.main import app

    monkeypatch.setenv("COLUMNS", "250")  # one option per line
    train_help = run_cli(["train", "--help"]).output
    for metavar in ("<finetune|joint|mib|plop|idec>", "<auto|cpu|satellite|paper|FILE.yaml>",
                    "<auto|cpu|cuda|cuda:N>", "<rgb|irrg|rgbir>"):
        assert metavar in train_help, metavar
    assert "<test|val|train>" in run_cli(["evaluate", "--help"]).output
    assert "<auto|cpu|cuda|cuda:N>" in run_cli(["predict", "--help"]).output
    assert "<onnx>" in run_cli(["export", "--help"]).output
    train = typer.main.get_command(app).commands["train"]
    ctx = train.make_context("train", ["isprs"], resilient_parsing=True)
    params = {p.name: p for p in train.params}
    assert [c.value for c in params["method"].shell_complete(ctx, "m")] == ["mib"]
    assert [c.value for c in params["preset"].shell_complete(ctx, "")] == [
        "auto", "cpu", "paper", "satellite"]
    assert [c.value for c in params["device"].shell_complete(ctx, "cu")] == ["cuda", "cuda:0"]
