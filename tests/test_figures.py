"""What users look at: run figures, the model card and `geoidec info`, on one tiny IDEC run on
fake Potsdam (bookkeeping and rendering only, never accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, run_main

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]
CLASSES = ["clutter", "impervious_surfaces", "building", "low_vegetation", "tree", "car"]


@pytest.fixture(scope="module")
def run(fake_potsdam: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained 4-1 IDEC run (pseudo-label statistics at step 1) with figures and card."""
    from geoidec.runs.figures import write_run_figures
    from geoidec.runs.model_card import write_model_card

    out = tmp_path_factory.mktemp("figures") / "idec"
    result = run_cli(["train", "isprs", "--root", str(fake_potsdam), "--steps", "4-1",
                      "--method", "idec", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    written = write_run_figures(out)
    assert [p.name for p in written] == ["miou_per_step.png", "iou_heatmap.png",
                                         "confusion_last_step.png", "pseudo_labels.png"]
    assert write_model_card(out) == out / "model_card.md"
    return out


def test_figures_are_png_of_sensible_size_and_not_blank(run: Path) -> None:
    from PIL import Image

    folder = run / "figures"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["miou_per_step.png", "iou_heatmap.png", "confusion_last_step.png",
         "pseudo_labels.png"])  # no temporary file left behind
    for path in folder.iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert 300 <= width <= 4000 and 250 <= height <= 4000, (path.name, image.size)
        assert pixels.std() > 0, path.name


def test_confusion_drops_the_unevaluated_background_row(run: Path) -> None:
    from geoidec.run_folder import read_confusion_csv
    from geoidec.runs.figures import draw_confusion

    names, matrix = read_confusion_csv(run / "metrics" / "step_1_confusion.csv")
    assert names == CLASSES
    fig = draw_confusion(names, matrix, 1, drop_background=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES[1:]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES


def test_model_card_lists_classes_metrics_figures_and_usage(run: Path) -> None:
    from geoidec.runs.reports import steps_table

    card = (run / "model_card.md").read_text()
    report = json.loads((run / "report.json").read_text())
    for name in CLASSES:
        assert name in card
    assert "#ffff00" in card  # car's colour
    assert steps_table(report) in card
    for figure in ("miou_per_step", "iou_heatmap", "confusion_last_step", "pseudo_labels"):
        assert f"](figures/{figure}.png)" in card
    assert "EPSG:32633" in card and "red, green, blue" in card
    assert "lambda_arcl" in card  # idec: every method setting
    assert f"geoidec predict SCENE.tif --model {run} --out OUT.tif" in card
    assert "top_potsdam_2_10" in card  # training scenes of RUN/steps/


def test_method_settings_keep_only_the_relevant_keys() -> None:
    import dataclasses

    from geoidec.config import MethodConfig
    from geoidec.runs.card_sections import method_settings

    cfg = dataclasses.asdict(MethodConfig())
    assert [k for k, _ in method_settings("mib", cfg)] == [
        "logit_kd", "lambda_logit_kd", "kd_temperature"]
    assert [k for k, _ in method_settings("plop", cfg)] == [
        "lambda_pod", "lambda_pod_logits", "plop_adaptive_factor", "pseudo_update_every"]
    assert method_settings("finetune", cfg) == method_settings("joint", cfg) == []
    assert len(method_settings("idec", cfg)) == len(cfg) - 1  # all but the name


@pytest.mark.parametrize("target", ["run", "checkpoint"])
def test_info_shows_classes_and_method(
    run: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = run if target == "run" else run / "checkpoints" / "step_1.pt"
    outcome = run_main(["info", path], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]
    for name in CLASSES:
        assert name in outcome.stdout
    assert "idec" in outcome.stdout and "lambda_arcl" in outcome.stdout
    assert "EPSG:32633" in outcome.stdout
    if target == "run":
        assert "mIoU old" in outcome.stdout


def test_info_errors_are_one_line(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line_error(run_main(["info", "/nonexistent"], monkeypatch), "not found",
                          "/nonexistent", code=1)
    assert_one_line_error(run_main(["info", run / "report.json"], monkeypatch),
                          "not a readable geoidec checkpoint", code=1)
    assert_one_line_error(run_main(["info", tmp_path], monkeypatch),
                          "not a geoidec run folder", code=1)
