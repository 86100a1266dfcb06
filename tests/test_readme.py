"""Every `geoidec` command shown in README.md runs, as written, on sample data (train commands
get tiny iteration/tile settings appended), so the documentation cannot rot.

The custom-dataset YAML of the README is written as shown and pointed at small rasters made
here; commands that need a GPU or a launcher (torchrun, srun) are only checked for their
`geoidec` part's flags via `--help`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from conftest import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


def _blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[list[str]]:
    """`geoidec ...` commands of the README's bash blocks, continuation lines joined."""
    commands = []
    for block in _blocks("bash"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            words = shlex.split(line)
            if words and words[0] == "geoidec":
                commands.append(words[1:])
    return commands


def yaml_files() -> list[str]:
    """The YAML paths the README's train commands read, in order (one per YAML block)."""
    paths = []
    for words in readme_commands():
        if words[0] == "train" and words[1].endswith(".yaml") and words[1] not in paths:
            paths.append(words[1])
    return paths


def _write_custom_datasets(root: Path) -> None:
    """The README's dataset YAMLs, verbatim, each with small 6-band rasters it points at
    (labels: the listed values and an unlisted one, 2 or 9)."""
    blocks, paths = _blocks("yaml"), yaml_files()
    assert len(blocks) == len(paths), (len(blocks), paths)
    rng = np.random.default_rng(0)
    for block, path in zip(blocks, paths, strict=True):
        yaml_path = root / path
        yaml_path.parent.mkdir(parents=True, exist_ok=True)
        doc = yaml.safe_load(block)
        values = [c["value"] for c in doc["classes"]]
        unlisted = 2 if 2 not in values else 9
        for split in ("train", "test"):
            image = yaml_path.parent / doc["images"][split][0]
            label = yaml_path.parent / doc["labels"][split][0]
            classes = np.repeat(np.repeat(rng.choice(values + [unlisted], size=(6, 6)), 8, 0),
                                8, 1)
            bands = np.stack([classes * (b + 1) + rng.normal(0, 1, classes.shape)
                              for b in range(6)]).astype("float32")
            profile = {"driver": "GTiff", "width": 48, "height": 48, "crs": "EPSG:32633",
                       "transform": Affine(10, 0, 500000, 0, -10, 4600000)}
            with rasterio.open(image, "w", count=6, dtype="float32", **profile) as dst:
                dst.write(bands)
            with rasterio.open(label, "w", count=1, dtype="int32", **profile) as dst:
                dst.write(classes[None].astype("int32"))
        yaml_path.write_text(block)


def test_readme_has_the_two_setup_commands_first() -> None:
    first = _blocks("bash")[0]
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()[:2]] == [
        "make demo", "make test"]


def test_readme_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands()
    assert len(commands) >= 6
    monkeypatch.chdir(tmp_path)
    _write_custom_datasets(tmp_path)
    for words in commands:
        args = list(words)
        if args[0] == "samples":
            args += ["--size", "128"]  # the last --size wins: small tiles for the test
        if args[0] == "train":
            args += TINY
        result = run_cli(args)
        assert result.exit_code == 0, (words, result.output, result.exception)
    assert (tmp_path / "top_potsdam_2_13_classes.tif").is_file()
    # the headline `geoidec predict SCENE` (no --model) mapped it beside the scene
    latest = tmp_path / "data/potsdam_sample/2_Ortho_RGB/top_potsdam_2_13_RGB_classes.tif"
    with rasterio.open(latest) as src:
        assert src.tags()["geoidec_checkpoint"].endswith("potsdam-idec/checkpoints/step_1.pt")
    # the model taught a new class --from the custom run maps it with the YAML's code
    with rasterio.open(tmp_path / "east_2026.tif") as src:
        assert src.tags(1)["CLASS_7"] == "wetland"
        assert src.colormap(1)[7][:3] == (0x66, 0xC2, 0xA5)
        assert set(np.unique(src.read(1))) <= {0, 1, 3, 4, 5, 6, 7, 255}
    assert (tmp_path / "east_2026_change.tif").is_file()
