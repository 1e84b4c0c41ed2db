"""Progress bars with rate and ETA (rich) on a terminal; silence elsewhere or with --quiet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s")


def stderr_console() -> Console:
    return Console(stderr=True)


class Bar:
    """One task of a progress display; ``advance(n)`` is all a worker needs."""

    def __init__(self, progress: Progress, description: str, total: float | None) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total)

    def advance(self, amount: float) -> None:
        self._progress.advance(self._task, amount)


@contextlib.contextmanager
def progress_bar(description: str, total: float | None, unit: str = "rows",
                 quiet: bool = False) -> Iterator[Bar]:
    """A bar over ``total`` items (``unit`` 'bytes' shows sizes and transfer speed)."""
    console = stderr_console()
    if unit == "bytes":
        counts: list[ProgressColumn] = [DownloadColumn(), TransferSpeedColumn()]
    else:
        counts = [MofNCompleteColumn(), RateColumn(unit)]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), *counts,
                        TimeRemainingColumn(), console=console,
                        disable=quiet or not console.is_terminal, transient=False)
    with progress:
        yield Bar(progress, description, total)
