"""The cyclic garbage collector, tuned for what each long job keeps alive.

CPython's collector rescans the objects it tracks whenever allocations outrun
deallocations by a threshold: 700 for the youngest generation, then older generations
every tenth collection of the one before. Both long jobs here allocate far more than
that, of objects reference counting frees on its own (records, events, rows, states:
none holds a cycle), so the default rescans cost a large share of their CPU for nothing:
`run` and `replay` keep batches in flight, and `rebuild` a state per user, growing with
the log. The few cycles they make (asyncio futures, exceptions) wait longer, not forever.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Objects the collector tracks per record in flight, with room to spare: measured at 8 to
# 10 (a record, its headers, its event and data models, its verdict, its rows, its user's
# state) at the peak of drains with 5,000 and 10,000 records a batch.
_TRACKED_PER_RECORD = 20
_LEAST_YOUNG_THRESHOLD = 100_000


def tune_for_batches(max_poll_records: int, concurrent_batches: int) -> None:
    """For `run`. What exists once the modules are imported (the contract's validators,
    the settings) lives as long as the process: frozen, the collector stops rescanning
    it. A young collection that the batches in flight can trigger by themselves rescans
    them all for nothing, at tens of milliseconds each: the young threshold sits above
    what they hold (``young_collection_threshold``), and older collections are 50 times
    rarer each (what it gained: README, "Throughput")."""
    gc.freeze()
    gc.set_threshold(young_collection_threshold(max_poll_records, concurrent_batches), 50, 50)


@contextmanager
def batch_thresholds(max_poll_records: int, concurrent_batches: int) -> Iterator[None]:
    """``tune_for_batches``' thresholds for a block, then the ones before it: for a job
    that writes batches as `run` does (`replay`), run in a process of its own or not."""
    before = gc.get_threshold()
    gc.set_threshold(young_collection_threshold(max_poll_records, concurrent_batches), 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def young_collection_threshold(max_poll_records: int, concurrent_batches: int) -> int:
    """Net allocations between young collections: twice what the batches in flight hold,
    so that they do not trigger one by themselves. In flight: one batch per write lane,
    one being decoded and one being counted after its commit."""
    in_flight = max_poll_records * (concurrent_batches + 2)
    return max(_LEAST_YOUNG_THRESHOLD, _TRACKED_PER_RECORD * in_flight)


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection within the block; the collector, if it was on, resumes after,
    and its first collection then scans what the block left alive, once. For folding a
    whole log into memory (`rebuild`): its states only grow, so every older collection
    rescans all of them, and a fold of 900,000 events spent 45% of its time there
    (docs/replay.md)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
