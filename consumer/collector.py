"""The cyclic garbage collector, tuned for what each long job keeps alive.

CPython's collector rescans the objects it tracks whenever allocations outrun
deallocations by a threshold: 700 for the youngest generation, then older generations
every tenth collection of the one before. The long jobs here allocate far more than
that, of objects reference counting frees on its own (records, events, rows, states:
none holds a cycle), so the default rescans cost a large share of their CPU for nothing:
`run` and `replay` keep batches in flight, and `rebuild` a state per user, growing with
the log. The few cycles they make (asyncio futures, exceptions) wait longer, not forever.

The blocks below may overlap in one event loop (two replays side by side, as a test
runs them): the first to enter changes the collector, the last to leave gives back what
the first found.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

# Objects the collector tracks per record in flight, with room to spare: measured at 8 to
# 10 (a record, its headers, its event and data models, its verdict, its rows, its user's
# state) at the peak of drains with 5,000 and 10,000 records a batch.
_TRACKED_PER_RECORD = 20
_LEAST_YOUNG_THRESHOLD = 100_000
# Cyclic garbage waits for a young collection at most this many net allocations: with
# the largest settings, 20 a record would be 36,000,000, and a cycle that held a batch
# (docs/performance.md, "Measured (2026-11-26)": a retry state once did) would keep it
# that long.
_MOST_YOUNG_THRESHOLD = 2_000_000
# Older collections, each 50 times rarer than the one younger (Python's: 10).
_OLDER_THRESHOLDS = (50, 50)


def tune_for_batches(*, max_poll_records: int, concurrent_batches: int) -> None:
    """For `run`, once. What exists once the modules are imported (the contract's
    validators, the settings) lives as long as the process: frozen, the collector stops
    rescanning it. A young collection that the batches in flight can trigger by
    themselves rescans them all for nothing, at tens of milliseconds each: the young
    threshold sits above what they hold (``young_collection_threshold``), and older
    collections are rarer (what it gained: docs/performance.md, "the collector")."""
    gc.freeze()
    gc.set_threshold(
        young_collection_threshold(max_poll_records, concurrent_batches), *_OLDER_THRESHOLDS
    )


def young_collection_threshold(max_poll_records: int, concurrent_batches: int) -> int:
    """Net allocations between young collections: twice what the batches in flight hold,
    so that they do not trigger one by themselves, within bounds. In flight: one batch
    per write lane, one being decoded and one being counted after its commit."""
    in_flight = max_poll_records * (concurrent_batches + 2)
    wanted = _TRACKED_PER_RECORD * in_flight
    return min(_MOST_YOUNG_THRESHOLD, max(_LEAST_YOUNG_THRESHOLD, wanted))


class _Shared(Generic[T]):
    """A change to the collector that overlapping blocks share: the first to enter makes
    it, the last to leave gives back what the first found."""

    def __init__(self, read: Callable[[], T], restore: Callable[[T], object]) -> None:
        self._read, self._restore = read, restore
        self._open = 0
        self._found: T | None = None

    @contextmanager
    def held(self, change: Callable[[], object]) -> Iterator[None]:
        if self._open == 0:
            self._found = self._read()
            change()
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            if self._open == 0:
                self._restore(self._found)  # type: ignore[arg-type]  # read at the first


_THRESHOLDS = _Shared(gc.get_threshold, lambda found: gc.set_threshold(*found))
_PAUSE = _Shared(gc.isenabled, lambda found: gc.enable() if found else gc.disable())


@contextmanager
def batch_thresholds(max_poll_records: int, concurrent_batches: int) -> Iterator[None]:
    """Thresholds sized as `run`'s, for a block that writes batches as `run` does
    (`replay`), then the ones found before it; no freezing, so that it may run in a
    process that goes on after it (a test's)."""
    young = young_collection_threshold(max_poll_records, concurrent_batches)
    with _THRESHOLDS.held(lambda: gc.set_threshold(young, *_OLDER_THRESHOLDS)):
        yield


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection within the block; the collector, if it was on, resumes after,
    and its first collection then scans what the block left alive, once. For folding a
    whole log into memory (`rebuild`): its states only grow, so every older collection
    rescans all of them, and a fold of 900,000 events spent 45% of its time there
    (docs/replay.md)."""
    with _PAUSE.held(gc.disable):
        yield
