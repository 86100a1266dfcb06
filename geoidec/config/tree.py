"""The whole run configuration, :class:`Config`: a tree of the section dataclasses, built from
a nested dict with every key and value checked against the annotated types, and copied with
dotted-key updates (``{"train.lr": 0.1}``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from geoidec.config.choices import ConfigError, match_choice, unknown_message
from geoidec.config.learning import MethodConfig, TrainConfig
from geoidec.config.sections import AugmentConfig, DataConfig, EvalConfig, ModelConfig

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build from a (possibly partial) nested dict, validating every key."""
        return _build(cls, data, "")

    def override(self, updates: Mapping[str, Any]) -> Config:
        """Return a copy with dotted-key updates (``{"train.lr": 0.1}``) applied."""
        tree = self.to_dict()
        for dotted, value in updates.items():
            _assign(tree, dotted, value)
        return Config.from_dict(tree)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _assign(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"config key '{dotted}' must look like section.key; sections: {', '.join(tree)}"
        )
    section, key = parts
    if section not in tree:
        raise ConfigError(unknown_message("section", section, tree))
    if key not in tree[section]:
        raise ConfigError(
            unknown_message(f"key in '{section}'", key, tree[section], prefix=section)
        )
    tree[section][key] = value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix or 'root'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                unknown_message(f"key in '{prefix}'" if prefix else "section", key, names, prefix)
            )
        tp = hints[key]
        where = f"{prefix}.{key}" if prefix else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(cast(type, tp), value or {}, where)
        else:
            kwargs[key] = _coerce(value, tp, where)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and convert a YAML scalar/list to the annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(
                f"config '{where}' must be a list of {len(args)} values, got {value!r}"
            )
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is Literal:
        return match_choice(value, args, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config '{where}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config '{where}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config '{where}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config '{where}' must be a string, got {value!r}")
    return value
