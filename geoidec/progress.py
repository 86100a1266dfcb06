"""Progress bars of long work (rich): prediction and evaluation windows with a rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressFn = Callable[[int, int], None]


def progress_bar() -> Any:
    """A rich progress bar with a rate column (windows per second) and an ETA, on stderr
    (stdout keeps what a script reads: tables, paths)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), transient=False, console=Console(stderr=True))


def window_progress(bar: Any, task: Any) -> ProgressFn:
    """A ``progress(done, total)`` callback updating ``task`` with windows per second."""
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rate:.1f} win/s")

    return progress


@contextmanager
def window_bar(description: str, enabled: bool = True) -> Iterator[ProgressFn | None]:
    """A bar of windows done (``None`` when not ``enabled``: quiet runs, other ranks)."""
    if not enabled:
        yield None
        return
    with progress_bar() as bar:
        yield window_progress(bar, bar.add_task(description, total=None, rate=""))
