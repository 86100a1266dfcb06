"""Configuration: presets, ``--set`` overrides and their type checks, frozen dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from geoidec.config import (
    Config,
    ConfigError,
    ModelConfig,
    choices,
    configs_dir,
    load_config,
    preset_names,
)

SECTIONS = ["model", "data", "train", "augment", "eval", "method"]


def test_bundled_presets() -> None:
    assert {"cpu", "paper", "satellite"} <= set(preset_names())


def test_cpu_preset() -> None:
    cfg = load_config("cpu")
    # The small-CPU invariants (the demo and the tests depend on them).
    assert cfg.model.backbone == "mobilenet_v3_small"
    assert cfg.model.weights == "none"
    assert cfg.data.num_workers == 0
    assert cfg.train.epochs is None  # iteration based
    # Every value the preset file lists is what the config holds (the values get tuned).
    doc = yaml.safe_load((configs_dir() / "presets" / "cpu.yaml").read_text())
    for section, values in doc.items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    # Keys it does not list keep the dataclass defaults.
    assert cfg.eval.split == "test"
    assert cfg.method.name == "finetune"


def test_paper_preset() -> None:
    cfg = load_config("paper")
    assert cfg.model.backbone == "resnet101"
    assert cfg.model.output_stride == 16
    assert cfg.model.aspp_channels == 256
    assert cfg.model.weights == "imagenet"
    assert cfg.data.tile_size == 512
    assert cfg.train.batch_size == 12
    assert cfg.train.epochs == 30
    assert cfg.train.nesterov is True
    assert cfg.train.momentum == pytest.approx(0.9)
    assert cfg.train.weight_decay == pytest.approx(1e-4)
    assert cfg.train.poly_power == pytest.approx(0.9)
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.train.lr_incremental == pytest.approx(0.001)
    assert isinstance(cfg.train.weight_decay, float)


def test_no_preset_gives_defaults() -> None:
    assert load_config(None) == Config()


def test_preset_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  iterations: 12\n  lr: 1\nmodel:\n  backbone: resnet18\n")
    cfg = load_config(path)
    assert cfg.train.iterations == 12
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.backbone == "resnet18"
    assert cfg.data == Config().data  # untouched sections keep defaults


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("gpu-fast")
    msg = str(err.value)
    assert "gpu-fast" in msg and "cpu" in msg and "paper" in msg


def test_missing_preset_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: 0.1\n  iterations: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "broken.yaml" in str(err.value) and "line" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("item", "section", "key", "expected"),
    [
        ("train.lr=0.5", "train", "lr", 0.5),
        ("train.lr=1", "train", "lr", 1.0),  # int -> float
        ("train.iterations=7", "train", "iterations", 7),
        ("train.iterations=7.0", "train", "iterations", 7),  # whole float -> int
        ("train.nesterov=false", "train", "nesterov", False),
        ("train.grad_clip=null", "train", "grad_clip", None),
        ("train.epochs=3", "train", "epochs", 3),
        ("model.backbone=resnet50", "model", "backbone", "resnet50"),
        ("model.aspp_channels=16", "model", "aspp_channels", 16),
        ("augment.scale=[0.5, 2]", "augment", "scale", (0.5, 2.0)),
        ("eval.tile_size=96", "eval", "tile_size", 96),
        ("method.name=joint", "method", "name", "joint"),
    ],
)
def test_set_override_coerces(item: str, section: str, key: str, expected: object) -> None:
    cfg = load_config("cpu", sets=[item])
    value = getattr(getattr(cfg, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_set_with_spaces_and_empty_value() -> None:
    cfg = load_config("cpu", sets=[" train.lr = 0.25", "train.grad_clip="])
    assert cfg.train.lr == 0.25
    assert cfg.train.grad_clip is None


def test_flag_overrides_then_set_wins() -> None:
    preset = load_config("cpu")
    cfg = load_config(
        "cpu",
        overrides={"train.iterations": 5, "train.batch_size": None, "data.tile_size": 32},
        sets=["train.iterations=9"],
    )
    assert cfg.train.iterations == 9  # --set is applied after the flags
    assert cfg.train.batch_size == preset.train.batch_size  # None flags are not given
    assert cfg.data.tile_size == 32


def test_unknown_section_lists_sections() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("cpu", sets=["bad.key=1"])
    msg = str(err.value)
    assert "'bad'" in msg
    for section in SECTIONS:
        assert section in msg


def test_unknown_key_names_key_and_suggests() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("cpu", sets=["train.lrr=0.1"])
    msg = str(err.value)
    assert "'lrr'" in msg
    assert "did you mean 'lr'" in msg
    for valid in ("train.lr", "train.iterations", "train.batch_size", "train.seed"):
        assert valid in msg


def test_unknown_key_in_preset_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("data:\n  tile_sise: 64\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "'tile_sise'" in msg and "data.tile_size" in msg


def test_unknown_section_in_preset_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("trainer:\n  lr: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "'trainer'" in str(err.value) and "train" in str(err.value)


def test_preset_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("train.iterations=abc", ["train.iterations", "integer", "abc"]),
        ("train.iterations=1.5", ["train.iterations", "integer", "1.5"]),
        ("train.iterations=true", ["train.iterations", "integer"]),
        ("train.lr=fast", ["train.lr", "number", "fast"]),
        ("train.nesterov=1", ["train.nesterov", "true or false"]),
        ("augment.scale=[1]", ["augment.scale", "2 values"]),
        ("augment.scale=0.5", ["augment.scale", "2 values"]),
        ("augment.hflip=2", ["augment.hflip", "probability in [0, 1]", "2.0"]),
        ("augment.scale=[1.5, 0.5]", ["augment.scale", "0 < low <= high"]),
        ("model.backbone=[a, b]", ["model.backbone", "string"]),
    ],
)
def test_set_bad_types(item: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("cpu", sets=[item])
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize(
    ("item", "needle"),
    [("train.lr", "key=value"), ("trainlr=0.1", "section.key"), ("a.b.c=1", "section.key")],
)
def test_set_malformed(item: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config("cpu", sets=[item])


def test_frozen() -> None:
    cfg = load_config("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train = cfg.train  # type: ignore[misc]


def test_override_returns_a_copy() -> None:
    cfg = load_config("cpu")
    lr = cfg.train.lr
    new = cfg.override({"train.lr": lr + 0.5})
    assert new.train.lr == lr + 0.5
    assert cfg.train.lr == lr
    assert new.model == cfg.model


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_to_dict_from_dict_round_trip(preset: str) -> None:
    cfg = load_config(preset, sets=["augment.scale=[0.6, 1.7]", "train.grad_clip=2.5"])
    data = cfg.to_dict()
    assert list(data) == SECTIONS
    assert data["augment"]["scale"] == [0.6, 1.7]  # tuples become lists
    assert Config.from_dict(data) == cfg
    # YAML-safe: survives safe_dump/safe_load (what config.yaml of a run holds).
    again = Config.from_dict(yaml.safe_load(yaml.safe_dump(data)))
    assert again == cfg
    assert again.augment.scale == (0.6, 1.7)


def test_from_dict_partial() -> None:
    cfg = Config.from_dict({"train": {"seed": 4}})
    assert cfg.train.seed == 4
    assert cfg.train.lr == Config().train.lr
    assert cfg.model == Config().model


# ------------------------------------------------------------------------- choices
CHOICE_FIELDS = [
    ("method.pseudo_label_mode", "fixd", "fixed"),
    ("method.classification", "bec", "bce"),
    ("method.arcl_loss", "infonse", "infonce"),
    ("method.feat_kd_distance", "l22", "l2"),
    ("method.uncertain", "ignor", "ignore"),
    ("train.precision", "bf61", "bf16"),
    ("train.optimizer", "adam", "adamw"),
    ("train.strategy", "dpp", "ddp"),
    ("data.protocol", "overlaped", "overlapped"),
    ("data.modality", "rbg", "rgb"),
    ("eval.split", "tset", "test"),
    ("model.head", "lrasp", "lraspp"),
]


@pytest.mark.parametrize(("key", "typo", "meant"), CHOICE_FIELDS)
def test_choice_typos_stop_with_the_valid_choices(key: str, typo: str, meant: str) -> None:
    section, name = key.split(".")
    cls = type(getattr(Config(), section))
    allowed = [str(c) for c in choices(cls, name)]
    assert meant in allowed
    with pytest.raises(ConfigError) as err:
        load_config("cpu", sets=[f"{key}={typo}"])
    message = str(err.value)
    assert "\n" not in message and key in message and f"did you mean '{meant}'" in message
    assert all(c in message for c in allowed)
    assert load_config("cpu", sets=[f"{key}={meant}"]).to_dict()[section][name] == meant


def test_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("cpu", sets=["method.name=iedc"])
    assert str(err.value) == ("unknown method 'iedc' (did you mean 'idec'?); valid: finetune, "
                              "joint, mib, plop, idec")


def test_numeric_choices_accept_yaml_numbers() -> None:
    cfg = load_config("cpu", sets=["train.precision=32", "model.first_stride=1",
                                   "model.output_stride=8"])
    assert (cfg.train.precision, cfg.model.first_stride, cfg.model.output_stride) == ("32", 1, 8)
    with pytest.raises(ConfigError, match="model.output_stride must be one of 8, 16, not 12"):
        load_config("cpu", sets=["model.output_stride=12"])


def test_backbone_and_device_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="resnet5' \\(did you mean 'resnet50'\\?\\)"):
        load_config("cpu", sets=["model.backbone=resnet5"])
    assert load_config("cpu", sets=["model.backbone=MobileNet-V3-Large"])
    with pytest.raises(ConfigError, match="cuda:N"):
        load_config("cpu", sets=["train.device=gpu"])
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_config("cpu", sets=[f"train.device={device}"]).train.device == device


def test_config_choice_lists_match_the_registries() -> None:
    from geoidec.config import BACKBONE_NAMES, METHOD_NAMES
    from geoidec.methods import METHODS
    from geoidec.models import BACKBONES
    from geoidec.models.heads import HEADS

    assert set(METHOD_NAMES) == set(METHODS)
    assert set(BACKBONE_NAMES) == set(BACKBONES)
    assert set(choices(ModelConfig, "head")) == set(HEADS)
