"""Loading a run configuration: a bundled preset or YAML file, then the dataset's settings,
flag overrides and ``--set section.key=value`` strings (:func:`load_config`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from geoidec.config.choices import ConfigError
from geoidec.config.tree import Config

__all__ = ["configs_dir", "load_config", "preset_names", "read_yaml"]


def configs_dir() -> Path:
    """Folder of the bundled YAML configurations (``configs/`` in the repository)."""
    return Path(str(resources.files("geoidec.configs")))


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in (configs_dir() / "presets").glob("*.yaml"))


def read_yaml(path: Path) -> Any:
    """Read a YAML file with ``safe_load``; errors are one line."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({exc.__class__.__name__})") from None


def load_config(
    preset: str | Path | None = "cpu",
    overrides: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    dataset_defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults + preset (name or YAML path) + the dataset's settings for that preset
    (``dataset_defaults``, dotted keys) + flag overrides + ``key=value`` strings."""
    cfg = Config()
    if preset is not None:
        path = Path(preset)
        if not path.suffix:
            path = configs_dir() / "presets" / f"{preset}.yaml"
            if not path.exists():
                raise ConfigError(
                    f"unknown preset '{preset}'; valid: {', '.join(preset_names())} "
                    "or a path to a YAML file"
                )
        cfg = Config.from_dict(read_yaml(path) or {})
    if dataset_defaults:
        cfg = cfg.override(dataset_defaults)
    updates = {k: v for k, v in (overrides or {}).items() if v is not None}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value (e.g. train.lr=0.01), got '{item}'")
        updates[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return cfg.override(updates) if updates else cfg
