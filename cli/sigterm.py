"""SIGTERM (a scheduler's or ``timeout``'s kill) while a command runs: ``predict`` unwinds on it
like Ctrl-C, so that no partial output keeps a final name, and ``main()`` then exits with
status 143 and says so."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

STOPPED = {"sigterm": False}
"""Set when SIGTERM stopped a command that unwinds on it (predict); read by ``main()`` (the
module that ``python -m geoidec.cli.main`` runs is ``__main__``, so the flag lives here)."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C inside this block (main thread only), so the partial
    outputs are removed before the process exits (status 143)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        STOPPED["sigterm"] = True
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_if_sigterm_unwound() -> None:
    """Exit with status 143 when SIGTERM stopped the command (its outputs were removed)."""
    if STOPPED["sigterm"]:
        typer.echo("geoidec: stopped by SIGTERM; nothing was left under a final name; run the "
                   "same command again", err=True)
        sys.exit(143)
