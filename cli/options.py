"""What the commands share about their options: the option types several commands take
(``--device``, ``--quiet``), and for options that take one of a few names, metavars for
``--help`` and completers for the shell (``geoidec --install-completion``). Light: no heavy
imports."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Annotated

import typer

from geoidec.config.choices import Tta

DEVICES = ("auto", "cpu", "cuda", "cuda:0")
DEVICE_METAVAR = "<auto|cpu|cuda|cuda:N>"


def metavar(names: list[str] | tuple[str, ...], more: str = "") -> str:
    """``<a|b|c>`` (plus ``|MORE``, e.g. a file)."""
    return "<" + "|".join([*names, *([more] if more else [])]) + ">"


def completer(names: Callable[[], list[str] | tuple[str, ...]]) -> Callable[[str], list[str]]:
    """A shell completer offering the ``names()`` that start with what is typed."""
    def complete(incomplete: str) -> list[str]:
        return [n for n in names() if n.startswith(incomplete)]
    return complete


def preset_names() -> list[str]:
    from geoidec.config import preset_names as bundled

    return ["auto", *bundled()]


_DEVICE = typer.Option(metavar=DEVICE_METAVAR, autocompletion=completer(lambda: DEVICES),
                       help="auto, cpu, cuda or cuda:N.")

Device = Annotated[str, _DEVICE]
"""``--device`` (evaluate, predict: default ``auto``)."""

DeviceOrConfig = Annotated[str | None, _DEVICE]
"""``--device`` of train (default: the preset's)."""

Quiet = Annotated[bool, typer.Option(help="No progress bars.")]
"""``--quiet`` of train and evaluate."""

TTA_NAMES: tuple[str, ...] = typing.get_args(Tta)  # none, flip, d4

TtaOption = Annotated[str | None, typer.Option(
    "--tta", metavar=metavar(TTA_NAMES), autocompletion=completer(lambda: TTA_NAMES),
    help="Test-time augmentation: none, flip (the mean of the probabilities over 4 flips: "
    "4x the forwards) or d4 (over the 8 rotations and flips of the square: 8x).")]
"""``--tta`` of evaluate and predict (default: evaluate as trained, ``eval.tta``; predict
``none``)."""
