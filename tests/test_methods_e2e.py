"""MiB, PLOP and IDEC through the engine and CLI on fake Potsdam: every loss term is logged,
pseudo-label statistics are written, step 0 can be shared, the ablation switches remove their
term, and `geoidec compare` pools runs. Tiny: these check bookkeeping, never accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, run_main

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


def _train(root: Path, out: Path, *extra: str) -> None:
    result = run_cli(["train", "isprs", "--root", str(root), "--steps", "4-1", "--out",
                      str(out), *TINY, *extra])
    assert result.exit_code == 0, result.output


def _logged_terms(run: Path, step: int) -> set[str]:
    with open(run / "logs" / f"step_{step}" / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    return {h for h in header if h.startswith("loss_")}


@pytest.fixture(scope="module")
def base(fake_potsdam: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("methods") / "finetune"
    _train(fake_potsdam, out, "--method", "finetune")
    return out


@pytest.mark.parametrize(("method", "terms"), [
    ("mib", {"loss_ce", "loss_logit_kd"}),
    ("plop", {"loss_ce", "loss_feat_kd"}),
    ("idec", {"loss_ce", "loss_feat_kd", "loss_logit_kd", "loss_arcl"}),
])
def test_method_logs_each_term_and_shares_step0(
    fake_potsdam: Path, base: Path, tmp_path: Path, method: str, terms: set[str]
) -> None:
    out = tmp_path / method
    _train(fake_potsdam, out, "--method", method, "--step0-from", str(base))
    report = json.loads((out / "report.json").read_text())
    ref = json.loads((base / "report.json").read_text())
    assert report["method"] == method
    # step 0 is the finetune run's, metrics included; step 1 was trained by the method
    assert report["steps"][0]["per_class_iou"] == ref["steps"][0]["per_class_iou"]
    assert report["steps"][0]["reused_from"] == str(base)
    assert (out / "checkpoints" / "step_0.pt").is_file()
    assert _logged_terms(out, 1) == terms
    if method in ("plop", "idec"):
        stats = report["steps"][1]["method_stats"]
        assert set(stats["pseudo_labels"]) == {
            "impervious_surfaces", "building", "low_vegetation", "tree"}
        with open(out / "metrics" / "step_1_pseudo_labels.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["class", "pseudo_labelled_pixels", "threshold"]
        assert {r[0]: int(r[1]) for r in rows[1:5]} == stats["pseudo_labels"]


@pytest.mark.parametrize("switch", ["feature_kd", "logit_kd", "arcl"])
def test_idec_ablation_switch_removes_its_term(
    fake_potsdam: Path, base: Path, tmp_path: Path, switch: str
) -> None:
    out = tmp_path / switch
    _train(fake_potsdam, out, "--method", "idec", "--step0-from", str(base),
           "--set", f"method.{switch}=false", "--label", f"idec-no-{switch}")
    term = {"feature_kd": "loss_feat_kd", "logit_kd": "loss_logit_kd", "arcl": "loss_arcl"}
    assert term[switch] not in _logged_terms(out, 1)
    assert "loss_ce" in _logged_terms(out, 1)
    assert json.loads((out / "report.json").read_text())["label"] == f"idec-no-{switch}"


def test_idec_without_pseudo_labels_writes_no_statistics(
    fake_potsdam: Path, base: Path, tmp_path: Path
) -> None:
    out = tmp_path / "nopl"
    _train(fake_potsdam, out, "--method", "idec", "--step0-from", str(base),
           "--set", "method.pseudo_labels=false")
    assert "method_stats" not in json.loads((out / "report.json").read_text())["steps"][1]
    assert not (out / "metrics" / "step_1_pseudo_labels.csv").exists()


def test_compare_pools_seeds_as_mean_and_std(base: Path, tmp_path: Path) -> None:
    # two copies of the same report with different values: mean ± std computed by hand
    runs = []
    for i, value in enumerate((0.5, 0.7)):
        run = tmp_path / f"r{i}"
        run.mkdir()
        report = json.loads((base / "report.json").read_text())
        report["steps"][-1]["miou_all"] = value
        (run / "report.json").write_text(json.dumps(report))
        runs.append(str(run))
    out = tmp_path / "table.md"
    result = run_cli(["compare", *runs, "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = [line for line in out.read_text().splitlines() if "| finetune |" in line][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "2"  # runs pooled
    assert cells[6] == "60.0 ± 14.1"  # mean 0.6, sample std 0.1414


def test_step0_from_refuses_other_classes(
    fake_potsdam: Path, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = run_main(["train", "isprs", "--root", str(fake_potsdam), "--steps", "2-3",
                        "--out", str(tmp_path / "x"), *TINY, "--step0-from", str(base)],
                       monkeypatch)
    assert_one_line_error(outcome, "step 0 learnt other classes", code=1)


def test_train_on_val_adds_the_held_out_scenes(fake_potsdam: Path, tmp_path: Path) -> None:
    import dataclasses

    from geoidec.config import Config
    from geoidec.data.isprs import potsdam
    from geoidec.tasks import TaskSchedule
    from geoidec.training.run import IncrementalRun

    spec = potsdam(fake_potsdam)
    train = spec.scenes("train")
    spec = dataclasses.replace(spec, splits={"train": train[:1], "val": train[1:],
                                             "test": spec.scenes("test")})
    schedule = TaskSchedule.parse("4-1", spec.class_names)
    default = IncrementalRun(spec, schedule, Config(), tmp_path)
    assert default.train_scenes == train[:1]
    cfg = Config().override({"data.train_on_val": True})
    assert IncrementalRun(spec, schedule, cfg, tmp_path).train_scenes == train
