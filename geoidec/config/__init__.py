"""Typed, frozen run configuration loaded from YAML presets plus command-line overrides.

A configuration is a tree of frozen dataclasses. It is built from, in order:

1. the dataclass defaults (:mod:`~geoidec.config.sections`, :mod:`~geoidec.config.learning`),
2. a preset YAML under ``configs/presets/`` (``cpu`` or ``paper``) or any YAML file,
3. explicit flags (``--iterations 50`` becomes ``train.iterations=50``),
4. ``--set section.key=value`` overrides (values parsed with ``yaml.safe_load``).

Unknown sections or keys are errors that name the key and list the valid ones
(:mod:`~geoidec.config.choices`); :mod:`~geoidec.config.tree` builds and checks the tree,
:mod:`~geoidec.config.loading` reads the YAML and applies the overrides.
"""

from geoidec.config.choices import (
    BACKBONE_NAMES,
    METHOD_NAMES,
    ConfigError,
    Modality,
    Precision,
    Split,
    Tta,
    choices,
)
from geoidec.config.learning import MethodConfig, TrainConfig
from geoidec.config.loading import configs_dir, load_config, preset_names, read_yaml
from geoidec.config.sections import AugmentConfig, DataConfig, EvalConfig, ModelConfig
from geoidec.config.tree import Config

__all__ = [
    "BACKBONE_NAMES",
    "METHOD_NAMES",
    "AugmentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "Modality",
    "ModelConfig",
    "Precision",
    "Split",
    "Tta",
    "TrainConfig",
    "choices",
    "configs_dir",
    "load_config",
    "preset_names",
    "read_yaml",
]
