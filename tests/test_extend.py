"""``geoidec train NEW.yaml --from RUN``: one incremental step from a model the user already
has, from labels of the new classes only. The step is the one a one-dataset schedule would
train (same metrics), chains keep their lineage, the parent is never modified, and every
mismatch stops in one line before a run folder exists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from conftest import assert_one_line_error, run_cli, run_main
from tiny_geotiffs import make_dataset, write_tif

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32", "--preset", "cpu",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


def _subset(full: Path, name: str, classes: list[int], **extra: object) -> Path:
    """A dataset YAML beside ``full`` listing only some of its classes (0-based)."""
    doc = yaml.safe_load(full.read_text())
    doc["name"] = name
    doc["classes"] = [doc["classes"][i] for i in classes]
    doc.update(extra)
    path = full.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """forest, water, field over 2 training and 2 test scenes."""
    return make_dataset(tmp_path_factory.mktemp("extend"), train=2, test=2, size=48)


@pytest.fixture(scope="module")
def v1(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of forest and water (step 0 only, one dataset listing those two)."""
    out = tmp_path_factory.mktemp("v1") / "v1"
    result = run_cli(["train", _subset(data, "step0", [0, 1]), "--out", out, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def _train(*args: object) -> None:
    result = run_cli(["train", *args, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_from_gives_the_metrics_of_the_one_dataset_schedule(
    data: Path, v1: Path, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    _train(data, "--steps", "2-1", "--out", full)
    before = _digests(v1)
    v2 = tmp_path / "v2"
    _train(_subset(data, "field-only", [2]), "--from", v1, "--out", v2, "--eval-on", data)
    assert _digests(v1) == before  # the parent run is only read
    a = json.loads((full / "report.json").read_text())["steps"][1]
    b = json.loads((v2 / "report.json").read_text())["steps"][0]
    assert b["step"] == 1 and b["step_classes"] == ["field"]
    for key in ("miou_old", "miou_new", "miou_all", "per_class_iou", "per_class_f1",
                "pixel_accuracy", "mean_f1"):
        assert a[key] == b[key], key
    assert b["old_classes"] == ["forest", "water"] and b["new_classes"] == ["field"]
    # the field-only test split scores field alone; the full dataset every class
    own, other = b["evaluations"]
    assert (own["dataset"], own["classes"], own["miou_old"]) == ("field-only", ["field"], None)
    assert other["classes"] == ["forest", "water", "field"]
    assert other["miou_all"] == a["miou_all"]
    # the same weights: the step is the one the schedule trains
    wa = torch.load(full / "checkpoints" / "step_1.pt", weights_only=True)["state_dict"]
    wb = torch.load(v2 / "checkpoints" / "step_1.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # `geoidec evaluate --on` scores the saved step the same way afterwards
    again = run_cli(["evaluate", v2, "--on", data, "--device", "cpu"])
    assert again.exit_code == 0, again.output
    row = [line for line in again.stdout.splitlines() if line.startswith("| 1 |")][0]
    assert f"| {100 * a['miou_all']:.1f} |" in row


def test_chain_keeps_the_lineage_and_known_classes_keep_their_index(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = tmp_path / "v1"
    _train(_subset(data, "forest-only", [0]), "--out", v1)
    v2 = tmp_path / "v2"
    _train(_subset(data, "water-only", [1]), "--from", v1, "--out", v2)
    # v3 lists water again (known: keeps index 2) and field (new: index 3)
    v3 = tmp_path / "v3"
    _train(_subset(data, "water-field", [1, 2]), "--from", v2, "--out", v3)
    ckpt = torch.load(v3 / "checkpoints" / "step_2.pt", weights_only=True)
    assert [c["name"] for c in ckpt["classes"]] == ["background", "forest", "water", "field"]
    assert ckpt["model"]["classes_per_step"] == [2, 1, 1]
    assert [(e["step"], e["classes"], e["dataset"]) for e in ckpt["lineage"]] == [
        (0, ["forest"], "forest-only"), (1, ["water"], "water-only"),
        (2, ["field"], "water-field")]
    parent = ckpt["parent"]
    assert parent["step"] == 1 and parent["checkpoint"] == str(
        (v2 / "checkpoints" / "step_1.pt").resolve())
    assert parent["sha256"] == hashlib.sha256(
        (v2 / "checkpoints" / "step_1.pt").read_bytes()).hexdigest()
    info = run_main(["info", v3], monkeypatch)
    assert info.code == 0, info.stderr
    assert "Lineage" in info.stdout and "water-only" in info.stdout
    card = (v3 / "model_card.md").read_text()
    assert "## Lineage" in card and "forest-only" in card
    # the water-field test split scores the two classes it lists
    entry = json.loads((v3 / "report.json").read_text())["steps"][0]
    assert set(entry["per_class_iou"]) == {"water", "field"}


def _images_with(data: Path, out: Path, transform, res: float = 0.5,  # noqa: ANN001
                 crs: str | None = "EPSG:32633") -> Path:
    """A copy of ``data``'s YAML whose images are ``transform(image)``, labels unchanged."""
    doc = yaml.safe_load(data.read_text())
    for split in ("train", "test"):
        for i, name in enumerate(doc["images"][split]):
            with rasterio.open(data.parent / name) as src:
                image = transform(src.read())
            target = out / "images" / Path(name).name
            write_tif(target, image, res=res, crs=crs, x0=500000.0 + i * 1000)
            doc["images"][split][i] = str(target)
            label = data.parent / doc["labels"][split][i]
            with rasterio.open(label) as src:
                write_tif(out / "labels" / label.name, src.read(), res=res, crs=crs,
                          x0=500000.0 + i * 1000)
            doc["labels"][split][i] = str(out / "labels" / label.name)
    doc["name"] = "changed"
    doc["classes"] = doc["classes"][2:]
    path = out / "changed.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(("change", "needles"), [
    (lambda x: np.concatenate([x, x[:1]]), ["has 4 band(s)", "trained on 3"]),
    (None, ["lists no class the model does not know"]),
])
def test_mismatches_stop_in_one_line_without_a_run_folder(
    data: Path, v1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change,  # noqa: ANN001
    needles: list[str],
) -> None:
    dataset = (_images_with(data, tmp_path / "d", change) if change is not None
               else _subset(data, "known-only", [0, 1]))
    outcome = run_main(["train", dataset, "--from", v1, "--out", tmp_path / "run", *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, *needles, code=1)
    assert not (tmp_path / "run").exists()


def test_band_names_must_match(data: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    named = _subset(data, "named", [0, 1], band_names=["red", "green", "blue"])
    parent = tmp_path / "parent"
    _train(named, "--out", parent)
    other = _subset(data, "renamed", [2], band_names=["nir", "green", "blue"])
    outcome = run_main(["train", other, "--from", parent, "--out", tmp_path / "run", *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, "has bands nir, green, blue", "red, green, blue", code=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "joint"], "joint learns every class at once"),
    (["--steps", "1"], "leave --steps out"),
])
def test_options_that_do_not_fit_from(data: Path, v1: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, args: list[str],
                                      needle: str) -> None:
    outcome = run_main(["train", _subset(data, "field-only", [2]), "--from", v1, "--out",
                        tmp_path / "run", *TINY, *args], monkeypatch)
    assert_one_line_error(outcome, needle)
    assert not (tmp_path / "run").exists()


def test_eval_on_needs_from(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", data, "--out", tmp_path / "run", "--eval-on", data, *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, "--eval-on scores a --from run")


def test_other_pixels_crs_and_statistics_warn_with_both_values(
    data: Path, v1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = _images_with(data, tmp_path / "d", lambda x: np.clip(x.astype(np.float32) * 0.3,
                                                                     0, 255).astype(np.uint8),
                           res=1.0, crs="EPSG:32632")
    outcome = run_main(["train", changed, "--from", v1, "--out", tmp_path / "run", *TINY],
                       monkeypatch)
    assert outcome.code == 0, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if "warning" in line]
    assert any("1 x 1 pixels" in line and "0.5 x 0.5" in line for line in lines), lines
    assert any("EPSG:32632" in line and "EPSG:32633" in line for line in lines), lines
    shift = [line for line in lines if "statistics differ" in line]
    assert len(shift) == 1 and "band 1" in shift[0] and "band 3" in shift[0], lines


def test_codes_of_the_user_in_the_extended_map(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(tmp_path / "data", train=2, test=1, size=48, values=(5, 7, 9))
    v1 = tmp_path / "v1"
    _train(_subset(data, "old", [0, 1]), "--out", v1)
    v2 = tmp_path / "v2"
    _train(_subset(data, "new", [2]), "--from", v1, "--out", v2)
    ckpt = torch.load(v2 / "checkpoints" / "step_1.pt", weights_only=True)
    assert [(c["name"], c["code"]) for c in ckpt["classes"]] == [
        ("background", 0), ("forest", 5), ("water", 7), ("field", 9)]
    out = tmp_path / "map.tif"
    result = run_cli(["predict", data.parent / "images" / "test_0.tif", "--model", v2,
                      "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        assert set(np.unique(dst.read(1)).tolist()) <= {0, 5, 7, 9}
    # a new class whose code the model already uses stops in one line
    clash = _subset(data, "clash", [2])
    doc = yaml.safe_load(clash.read_text())
    doc["classes"][0]["code"] = 7
    clash.write_text(yaml.safe_dump(doc))
    outcome = run_main(["train", clash, "--from", v1, "--out", tmp_path / "run", *TINY],
                       monkeypatch)
    assert_one_line_error(outcome, "class 'field' has code 7", "the model uses for 'water'", code=1)
    assert not (tmp_path / "run").exists()


def test_change_from_prints_the_pixels_and_hectares_that_moved(
    data: Path, v1: Path, tmp_path: Path
) -> None:
    v2 = tmp_path / "v2"
    _train(_subset(data, "field-only", [2]), "--from", v1, "--out", v2)
    scene = data.parent / "images" / "test_0.tif"
    result = run_cli(["predict", scene, "--model", v2, "--out", tmp_path / "new.tif",
                      "--change-from", v1, "--quiet"])
    assert result.exit_code == 0, result.output
    assert run_cli(["predict", scene, "--model", v1, "--out", tmp_path / "old.tif",
                    "--quiet"]).exit_code == 0
    with rasterio.open(tmp_path / "old.tif") as a, rasterio.open(tmp_path / "new.tif") as b:
        old, new = a.read(1), b.read(1)
        area = abs(b.res[0] * b.res[1])  # EPSG:32633, metres
    names = ["background", "forest", "water", "field"]
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[2].replace(",", "").isdigit():
            rows[(cells[0], cells[1])] = (int(cells[2].replace(",", "")), float(cells[3]))
    expected = {}
    for i, a_name in enumerate(names[:3]):
        for j, b_name in enumerate(names):
            n = int(((old == i) & (new == j)).sum())
            if n and a_name != b_name:
                expected[(a_name, b_name)] = n
    assert {k: v[0] for k, v in rows.items() if k[0] != "(unchanged)"} == expected
    unchanged = int(sum(((old == i) & (new == i)).sum() for i in range(3)))
    assert rows[("(unchanged)", "")][0] == unchanged
    for (n, hectares) in rows.values():
        assert hectares == pytest.approx(n * area / 10_000, abs=0.006)


def test_hectares_keep_two_significant_digits_below_a_hundredth() -> None:
    from geoidec.inference.change import hectares

    # 45 aerial pixels of 0.1 m: 0.45 m² = 0.000045 ha; 4,537 of them: 0.0045 ha
    assert hectares(45 * 0.01 / 10_000) == "0.000045"
    assert hectares(4537 * 0.01 / 10_000) == "0.0045"
    assert hectares(12_345.678) == "12,345.68" and hectares(0.0) == "0.00"
