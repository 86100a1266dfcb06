"""What the options that take one of a few names accept: metavars for ``--help`` and
completers for the shell (``geoidec --install-completion``). Light: no heavy imports."""

from __future__ import annotations

from collections.abc import Callable

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
