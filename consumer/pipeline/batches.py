"""A batch on its way through the pipeline: decoded, waiting for its turn, written.

The write is one transaction for the whole batch: the events applied, the offsets moved
by compare-and-set, and the dead letters acknowledged by Kafka before it commits. The
live loop and ``replay`` write through the same function.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from opentelemetry.trace import Span

from consumer.core.batchplan import BatchPlan
from consumer.core.decode import AnyUserEvent, decode_all
from consumer.core.records import FetchedRecord, KafkaRecord, Rejection
from consumer.edges.deadletter import DeadLetter, DeadLetterQueue
from consumer.edges.store import Store
from consumer.pipeline.partitions import PartitionState
from consumer.pipeline.unreadable import reject_stand_ins

# Decoding yields to the write in flight after each chunk. The write is the pipeline's
# critical path and resumes a dozen times per batch (once per statement), each time
# after the chunk in hand: about 1 ms at 100 records, 6 ms at 500 (measured: 500 cost
# a 200k drain 10-15% of its rate).
DECODE_CHUNK = 100

Accepted = list[tuple[KafkaRecord, AnyUserEvent]]


def split_batch(
    records: Sequence[KafkaRecord], max_bytes: int
) -> tuple[Accepted, list[DeadLetter], dict[TopicPartition, int]]:
    """Decode a fetched batch: valid events, poison records, and the next offset per partition."""
    accepted: Accepted = []
    poison: list[DeadLetter] = []
    # Keyed by a plain tuple in the loop: a TopicPartition per record cost 0.3 us.
    last: dict[tuple[str, int], int] = {}
    for record, verdict in decode_all(records, max_bytes):
        if isinstance(verdict, Rejection):
            poison.append((record, verdict))
        else:
            accepted.append((record, verdict))
        last[record.topic, record.partition] = record.offset
    return accepted, poison, {TopicPartition(*key): at + 1 for key, at in last.items()}


@dataclass
class PreparedBatch:
    """A fetched batch, decoded, waiting for its turn to be written."""

    generation: int
    started: float
    records: list[KafkaRecord] = field(default_factory=list)
    accepted: Accepted = field(default_factory=list)
    poison: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Per partition: the offset stored in PostgreSQL once the batch before it commits.
    start_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Per partition: the state it was taken from (see ``Partitions.is_current``).
    taken_from: dict[TopicPartition, PartitionState] = field(default_factory=dict)
    # Its span, from when it was taken to its commit or its drop; None without tracing.
    span: Span | None = None

    @property
    def partitions(self) -> frozenset[TopicPartition]:
        return frozenset(self.next_offsets)


@dataclass
class CommittedBatch:
    """A batch whose transaction committed: what its Kafka commit and metrics need."""

    batch: PreparedBatch
    plan: BatchPlan
    dead: list[DeadLetter]
    # When the transaction committed, by both clocks: the metrics are recorded later.
    committed_at: float = field(default_factory=time.monotonic)
    committed_at_wall: float = field(default_factory=time.time)


async def decode_batch(
    messages: Sequence[FetchedRecord], max_bytes: int, batch: PreparedBatch
) -> PreparedBatch:
    """Decode ``messages`` into ``batch``, yielding between chunks so the write in flight
    goes on."""
    for start in range(0, len(messages), DECODE_CHUNK):
        chunk = messages[start : start + DECODE_CHUNK]
        records = [KafkaRecord.from_consumer_record(m) for m in chunk]
        accepted, poison, next_offsets = split_batch(records, max_bytes)
        if poison:
            poison = reject_stand_ins(chunk, poison)
        batch.records.extend(records)
        batch.accepted.extend(accepted)
        batch.poison.extend(poison)
        batch.next_offsets.update(next_offsets)
        await asyncio.sleep(0)
    return batch


@dataclass(frozen=True)
class OffsetsMove:
    """Where a batch moves its partitions' stored offsets: from ``start`` to ``end``."""

    group_id: str
    start: Mapping[TopicPartition, int]
    end: Mapping[TopicPartition, int]


class _RolledBack(Exception):
    """Ends a dry run's transaction: everything it decided is undone."""


class GuardCrossed(Exception):
    """The batch's dead letters would cross the storm guard's limits: rolled back. Per
    partition, the offset of the first record that would."""

    def __init__(self, at: Mapping[TopicPartition, int]) -> None:
        super().__init__(f"dead-letter limit crossed on {len(at)} partition(s)")
        self.at = dict(at)


# Given a batch's dead letters, where the storm guard would hold each partition.
GuardCheck = Callable[[Sequence[DeadLetter]], Mapping[TopicPartition, int]]


async def write_batch(
    store: Store,
    accepted: Sequence[tuple[KafkaRecord, AnyUserEvent]],
    poison: Sequence[DeadLetter],
    dead_letters: DeadLetterQueue | None,
    offsets: OffsetsMove | None = None,
    guard: GuardCheck | None = None,
) -> tuple[BatchPlan, list[DeadLetter]]:
    """Write one batch in one transaction; returns its plan and its dead letters in order.

    The dead letters are acknowledged before the transaction commits the offsets past
    them: a dead letter that cannot be written rolls the batch back, to be retried.
    Without ``dead_letters`` (a dry run) everything is decided, then rolled back. If
    ``guard`` says the dead letters cross the storm guard's limits, nothing is sent and
    ``GuardCrossed`` rolls the batch back.
    """
    result: tuple[BatchPlan, list[DeadLetter]] | None = None
    try:
        async with store.batch() as writer:
            plan = await writer.apply(accepted)
            if offsets is not None:
                await writer.save_offsets(offsets.group_id, offsets.end, offsets.start)
            dead = sorted([*poison, *plan.rejected], key=lambda d: (d[0].partition, d[0].offset))
            if guard is not None and dead and (crossed := guard(dead)):
                raise GuardCrossed(crossed)
            result = (plan, dead)
            if dead_letters is None:
                raise _RolledBack
            # Parked events that can no longer heal go too; they count as the batch's
            # outcome nowhere, being records of earlier batches.
            await dead_letters.send_all([*dead, *plan.released])
    except _RolledBack:
        pass
    assert result is not None
    return result


def cut_batch(batch: PreparedBatch, at: Mapping[TopicPartition, int]) -> PreparedBatch:
    """``batch`` without the records of each partition in ``at`` from its offset on: the
    batch then ends, and stores its offsets, right before them."""

    def kept(record: KafkaRecord) -> bool:
        cut = at.get(TopicPartition(record.topic, record.partition))
        return cut is None or record.offset < cut

    return PreparedBatch(
        batch.generation,
        batch.started,
        records=[r for r in batch.records if kept(r)],
        accepted=[entry for entry in batch.accepted if kept(entry[0])],
        poison=[entry for entry in batch.poison if kept(entry[0])],
        next_offsets={**batch.next_offsets, **at},
        start_offsets=batch.start_offsets,
        taken_from=batch.taken_from,
        span=batch.span,
    )


def outcomes_by_partition(
    records: Sequence[KafkaRecord], dead: Sequence[DeadLetter]
) -> dict[TopicPartition, list[tuple[int, bool]]]:
    """Per partition, in offset order, each record's offset and whether it is dead-lettered."""
    dead_at = {(record.topic, record.partition, record.offset) for record, _ in dead}
    outcomes: dict[TopicPartition, list[tuple[int, bool]]] = {}
    for record in records:
        key = TopicPartition(record.topic, record.partition)
        dead_here = (record.topic, record.partition, record.offset) in dead_at
        outcomes.setdefault(key, []).append((record.offset, dead_here))
    return outcomes
