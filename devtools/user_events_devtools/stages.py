"""`bench`'s breakdown of the hot path's pure stages: the CPU each costs per record, on
the bench's data set, without I/O.

A drain's CPU per event moves by several percent from one run to the next (the broker,
PostgreSQL and the bench share two cores), which hides any one lever worth 1 to 3%. The
pure stages repeat to within a few percent: the same code, the same data, one process.
They are the `run` process's Python work between the fetch and the COPY, not the
drivers' (aiokafka's unpacking, asyncpg's encoding and decoding) nor the event loop's.

The records are placed and batched as the limit probe's (``probedata``): the bench's
producer's partitions, a batch of each partition in turn, each decided against the
state the batches before it left. Each stage runs over every batch; a stage's figure is
the best of ``repeats`` passes, with the cyclic collector off, as the service keeps it
mostly off (``consumer.collector``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from consumer import collector
from consumer.core.batchplan import Planner, claimed_emails
from consumer.core.dedupe import possibly_logged
from consumer.core.erasure import sealing_keys
from consumer.core.records import KafkaRecord
from consumer.core.rows import event_rows, state_from_row, user_rows
from consumer.core.sealing import Sealer, new_key
from consumer.pipeline.aftercommit import event_ages
from consumer.pipeline.batches import DECODE_CHUNK, split_batch
from user_events_devtools.probedata import DecidedBatch, decided_batches, in_batches, topic_records

# The stages, in the order a batch meets them.
STAGES = (
    "decode",  # bytes to events or rejections, and the next offsets (split_batch)
    "read rows",  # users rows to states (state_from_row), as the read phase does
    "look-up rules",  # the emails claimed, the events that may be logged
    "plan",  # each event's verdict, in order (Planner.decide)
    "log rows",  # the keys that seal, then the log's rows: payload, sealing
    "users rows",  # the users' rows, their versions as JSON
    "event age",  # the metric's ages, one per logged event
)


def stage_costs(
    total: int, users: int, batch_size: int, max_bytes: int, repeats: int = 3
) -> dict[str, float]:
    """Microseconds of CPU per record for each stage in ``STAGES``, over the data set's
    first records (at most 50,000) in batches of ``batch_size``."""
    placed = topic_records("bench", 6, min(total, 50_000), users)
    records = sum(len(r) for r in placed.values())
    batches = decided_batches(list(in_batches(placed, batch_size)), max_bytes)
    now = time.time()
    work: dict[str, Callable[[DecidedBatch], object]] = {
        "decode": lambda b: _decode(b.records, max_bytes),
        "read rows": lambda b: [state_from_row(row) for row in b.read_rows],
        "look-up rules": lambda b: (
            claimed_emails(b.accepted),
            possibly_logged(b.accepted, b.states_before),
        ),
        "plan": lambda b: Planner(b.states_before, b.logged_keys, b.owners).decide(b.accepted),
        "log rows": _log_rows,
        "users rows": lambda b: user_rows(b.plan.users.values(), b.keys_after),
        "event age": lambda b: event_ages(b.plan.logged, now),
    }
    return {name: _best(work[name], batches, repeats) / records * 1e6 for name in STAGES}


def _decode(records: Sequence[KafkaRecord], max_bytes: int) -> None:
    for start in range(0, len(records), DECODE_CHUNK):
        split_batch(records[start : start + DECODE_CHUNK], max_bytes)


def _log_rows(batch: DecidedBatch) -> object:
    logged = batch.plan.logged
    sealed_with, _ = sealing_keys(logged, batch.keys, new_key)
    return event_rows(logged, sealed_with, Sealer(len(logged)))


def _best(
    stage: Callable[[DecidedBatch], object], batches: list[DecidedBatch], repeats: int
) -> float:
    """The least CPU time of ``repeats`` passes of ``stage`` over every batch."""
    best = float("inf")
    with collector.paused():
        for _ in range(repeats):
            started = time.process_time()
            for batch in batches:
                stage(batch)
            best = min(best, time.process_time() - started)
    return best
