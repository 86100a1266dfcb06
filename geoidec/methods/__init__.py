"""Continual-learning methods, each a small class over the shared engine."""

from __future__ import annotations

import difflib

from geoidec.config import ConfigError, MethodConfig
from geoidec.methods.base import Batch, Method, StepPlan
from geoidec.methods.finetune import Finetune
from geoidec.methods.idec import IDEC
from geoidec.methods.joint import Joint
from geoidec.methods.mib import MiB
from geoidec.methods.plop import PLOP

METHODS: dict[str, type[Method]] = {m.name: m for m in (Finetune, Joint, MiB, PLOP, IDEC)}


def build_method(config: MethodConfig) -> Method:
    """Instantiate ``config.name``; unknown names get the list of valid ones."""
    if config.name not in METHODS:
        close = difflib.get_close_matches(config.name, list(METHODS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown method '{config.name}'{hint}; valid: {', '.join(METHODS)}")
    return METHODS[config.name](config)


__all__ = ["METHODS", "Batch", "Method", "StepPlan", "build_method"]
