"""A replay's progress while it runs: a bar on a terminal, a log line every few seconds
elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from consumer.tools.replay.summary import ReplaySummary

log = logging.getLogger(__name__)


class Progress(Protocol):
    def advance(self, summary: ReplaySummary) -> None: ...
    def close(self) -> None: ...


class LineProgress:
    """Not a terminal: one log line every ``every`` seconds, and one at the end."""

    def __init__(self, total: int, every: float = 5.0) -> None:
        self.total, self.every = total, every
        self.started = self.last = time.monotonic()
        self.summary: ReplaySummary | None = None

    def advance(self, summary: ReplaySummary) -> None:
        self.summary = summary
        if time.monotonic() - self.last >= self.every:
            self._line()

    def close(self) -> None:
        if self.summary is not None:
            self._line()

    def _line(self) -> None:
        assert self.summary is not None
        self.last = time.monotonic()
        t = self.summary.total()
        elapsed = max(self.last - self.started, 1e-6)
        log.info(
            "replay progress",
            extra={
                "read": t.read,
                "of": self.total,
                "applied": t.applied,
                "duplicate": t.duplicate,
                "stale": t.stale,
                "dead_lettered": t.dead_lettered,
                "records_per_second": round(t.read / elapsed, 1),
            },
        )


class BarProgress:
    """A terminal: a rich progress bar with the counts and the rate."""

    def __init__(self, total: int) -> None:
        self._bar = RichProgress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]} rec/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("replay", total=total, counts="", rate="0")
        self._bar.start()

    def advance(self, summary: ReplaySummary) -> None:
        t = summary.total()
        task = self._bar.tasks[0]
        self._bar.update(
            self._task,
            completed=t.read,
            counts=f"applied {t.applied} dup {t.duplicate} stale {t.stale} dead {t.dead_lettered}",
            rate=f"{task.speed or 0:,.0f}",
        )

    def close(self) -> None:
        self._bar.stop()


def make_progress(total: int, interactive: bool | None = None) -> Progress:
    """A bar when ``interactive`` (by default: when stderr is a terminal), else log lines."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return BarProgress(total) if interactive else LineProgress(total)
