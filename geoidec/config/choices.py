"""The names config settings may take, and the one-line :class:`ConfigError` for any other.

Holds the names of the method and backbone registries (checked here so that a typo stops before
torch is imported or any data is read), the ``Literal`` choice types shared by the sections,
:func:`choices` (a field's valid values, for ``--help``), and the matching of a YAML value to a
choice or of a key to the valid keys, with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from typing import Any, Literal

from geoidec.errors import UsageError

__all__ = [
    "BACKBONE_NAMES",
    "METHOD_NAMES",
    "ConfigError",
    "Modality",
    "Precision",
    "Split",
    "TTA_VIEWS",
    "TTA_WORDS",
    "Tta",
    "View",
    "choices",
    "match_choice",
    "unknown_message",
]


class ConfigError(UsageError):
    """A configuration problem, phrased for the user in one line."""


#: Methods of the registry (geoidec.methods.METHODS; a test keeps both equal).
METHOD_NAMES: tuple[str, ...] = ("finetune", "joint", "mib", "plop", "idec")
#: ISPRS Potsdam imagery: 2_Ortho_RGB, 3_Ortho_IRRG or 4_Ortho_RGBIR.
Modality = Literal["rgb", "irrg", "rgbir"]
#: Evaluation splits.
Split = Literal["test", "val", "train"]
#: Test-time augmentation of evaluation and prediction: ``none``, ``flip`` (the mean over
#: identity, left-right, up-down and both flips: 4 forwards) or ``d4`` (those 4 and their
#: transposes, the 8 symmetries of the square: 8 forwards).
Tta = Literal["none", "flip", "d4"]
#: What each test-time augmentation computes, in words (model cards, reports).
TTA_WORDS: dict[str, str] = {"none": "one forward per window",
                             "flip": "the mean of the probabilities over 4 flips",
                             "d4": "the mean of the probabilities over the 8 rotations and "
                                   "flips of the square"}
# A view of a test-time augmentation: (transpose H and W first, flip W, flip H); the
# inverse undoes the flips, then the transpose (geoidec.inference.forward applies them).
# One forward per view.
View = tuple[bool, bool, bool]
TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": ((False, False, False),),
    "flip": ((False, False, False), (False, True, False), (False, False, True),
             (False, True, True)),
}
TTA_VIEWS["d4"] = TTA_VIEWS["flip"] + tuple((True, w, h) for _, w, h in TTA_VIEWS["flip"])
#: Lightning precisions accepted by ``train.precision`` (``auto``: AMP on CUDA, else fp32).
Precision = Literal["auto", "32", "16", "bf16", "32-true", "16-mixed", "bf16-mixed"]
#: Backbones of the model registry (geoidec.models.BACKBONES; a test keeps both equal), here
#: so that a typo stops before torch is imported or any data is read.
BACKBONE_NAMES: tuple[str, ...] = (
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet101", "resnet18",
    "resnet50",
)


def choices(cls: type, name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field of a config dataclass accepts (for ``--help``)."""
    return typing.get_args(typing.get_type_hints(cls)[name])


def match_choice(value: Any, allowed: tuple[Any, ...], where: str) -> Any:
    """``value`` if it is one of ``allowed`` (YAML's ``32`` matches ``"32"``, ``"16"`` matches
    16); else a one-line error naming the valid choices."""
    candidates = [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        candidates.append(str(int(value)) if float(value).is_integer() else str(value))
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        candidates.append(int(value))
    for candidate in candidates:
        for option in allowed:
            if type(candidate) is type(option) and candidate == option:
                return option
    shown = ", ".join(str(a) for a in allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{where} must be one of {shown}, not {value!r}{hint}")


def unknown_message(what: str, name: str, valid: Iterable[str], prefix: str = "") -> str:
    """``unknown config WHAT 'NAME' (did you mean ...?); valid: ...``; with ``prefix``, the
    valid names are shown as ``prefix.name``."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = ", ".join(f"{prefix}.{v}" if prefix else v for v in valid)
    return f"unknown config {what} '{name}'{hint}; valid: {shown}"
