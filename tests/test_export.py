"""``geoidec export CKPT --format onnx``: onnxruntime gives the probabilities geoidec computes
on the same raw pixels (normalisation inside the graph), with the QGIS Deepness metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_main

from geoidec.checkpoint import save_checkpoint
from geoidec.data.normalization import Normalization
from geoidec.inference.forward import probability_fn
from geoidec.models import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TILE, OVERLAP = 64, 16
NAMES = ["background", "forest", "water", "field"]
#: Not the identity: the graph must apply low/high scaling and standardisation.
NORM = Normalization(low=(10.0, 0.0, 5.0), high=(250.0, 255.0, 200.0),
                     mean=(0.4, 0.5, 0.3), std=(0.2, 0.25, 0.15))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny two-step checkpoint in a run folder layout (RUN/checkpoints)."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", [3, 1], in_channels=3, aspp_channels=16).eval()
    meta = {
        "step": 1, "step_classes": ["field"], "bands": 3, "band_names": ["r", "g", "b"],
        "rgb_bands": [0, 1, 2], "normalization": NORM.to_dict(), "tile_size": TILE,
        "overlap": OVERLAP, "resolution": [0.05, 0.05], "crs": "EPSG:32633",
        "method": "idec", "dataset": {"name": "tiny"},
        "classes": [{"index": i, "name": n, "color": [60 * i, 200 - 40 * i, 90]}
                    for i, n in enumerate(NAMES)],
    }
    run = tmp_path_factory.mktemp("export") / "run"
    return save_checkpoint(run / "checkpoints" / "step_1.pt", model, meta)


@pytest.fixture(scope="module")
def exported(checkpoint: Path) -> Path:
    out = checkpoint.parent.parent / "model.onnx"
    mp = pytest.MonkeyPatch()
    try:
        outcome = run_main(["export", checkpoint.parent.parent, "--format", "onnx", "--out",
                            out], mp)
    finally:
        mp.undo()
    assert outcome.code == 0, outcome.stderr
    assert "onnxruntime matches PyTorch" in outcome.stdout
    return out


def test_onnx_matches_geoidec_probabilities(exported: Path, checkpoint: Path) -> None:
    from geoidec.checkpoint import load_checkpoint

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (3, 3, TILE, TILE)).astype(np.float32)  # 3 tiles: dynamic batch
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: raw / 255.0})[0]
    ckpt = load_checkpoint(checkpoint)
    x = torch.from_numpy(np.stack([NORM.standardize(NORM.to_unit(tile)) for tile in raw]))
    want = probability_fn(ckpt.model, torch.device("cpu"))(x.float()).numpy()
    assert got.shape == (3, len(NAMES), TILE, TILE)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_deepness_metadata_and_shapes(exported: Path) -> None:
    model = onnx.load(str(exported))
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in model.opset_import)
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {str(i): n for i, n in enumerate(NAMES)}
    assert meta["resolution"] == pytest.approx(5.0)  # cm per pixel
    assert meta["tile_size"] == meta["tiles_size"] == TILE
    assert meta["tiles_overlap"] == 25
    assert meta["standardization_mean"] == [0.0] * 3
    assert meta["standardization_std"] == [1.0] * 3
    assert meta["seg_thresh"] == 0.0
    assert meta["geoidec"]["normalization"] == NORM.to_dict()
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.shape[1:] == [3, TILE, TILE] and isinstance(inp.shape[0], str)
    assert out.shape[1:] == [len(NAMES), TILE, TILE]  # static: Deepness checks it is square


def test_export_refuses_to_overwrite_and_unknown_formats(exported: Path, checkpoint: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before = exported.stat().st_mtime_ns
    outcome = run_main(["export", checkpoint, "--out", exported], monkeypatch)
    assert_one_line_error(outcome, f"{exported} exists; pass --overwrite")
    outcome = run_main(["export", checkpoint, "--format", "tflite", "--out",
                        exported.with_name("m.tflite")], monkeypatch)
    assert_one_line_error(outcome, "--format tflite is not supported; formats: onnx")
    assert exported.stat().st_mtime_ns == before
    assert not list(exported.parent.glob(".model.onnx.*"))


def test_export_stac_item_with_the_ml_model_extension(checkpoint: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``export --stac``: a STAC Item pystac reads back, the ONNX file its model asset, the
    input bands and shapes, the output classes and the checkpoint's SHA-256."""
    import hashlib

    import pystac

    out = tmp_path / "m.onnx"
    outcome = run_main(["export", checkpoint, "--out", out, "--stac"], monkeypatch)
    assert outcome.code == 0, outcome.stderr
    item = pystac.Item.from_file(str(tmp_path / "m.stac.json"))
    assert "https://stac-extensions.github.io/mlm/v1.4.0/schema.json" in item.stac_extensions
    assert item.geometry is None and item.properties["mlm:tasks"] == ["semantic-segmentation"]
    model = item.assets["model"]
    assert Path(model.get_absolute_href()) == out and "mlm:model" in model.roles
    (inp,), (output,) = item.properties["mlm:input"], item.properties["mlm:output"]
    assert inp["bands"] == ["r", "g", "b"] and inp["input"]["shape"] == [-1, 3, TILE, TILE]
    assert output["result"]["shape"] == [-1, len(NAMES), TILE, TILE]
    assert [(c["value"], c["name"], c["color_hint"]) for c in
            output["classification:classes"]] == [
        (i, n, f"{60 * i:02X}{200 - 40 * i:02X}{90:02X}")
        for i, n in enumerate(NAMES)]
    assert item.properties["geoidec:sha256"] == hashlib.sha256(
        checkpoint.read_bytes()).hexdigest()
