"""Reading offset ranges of a topic by partition assignment, for the operator tools.

No consumer group is joined (``group_id=None``), so a tool never disturbs the live
consumer's group, never commits, and starts in milliseconds. "Up to now" is the high
watermark seen in fetch responses (``consumer.highwater``): some Kafka-compatible
brokers answer ``ListOffsets(latest)`` wrongly for batched producers, fetch responses
carry the right value everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.core.records import KafkaRecord
from consumer.edges.kafka import client_options
from consumer.settings import Settings
from consumer.tools.errors import ToolError


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@asynccontextmanager
async def assigned_consumer(settings: Settings, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer for manual assignment (no group, no commits), stopped after."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        fetch_max_bytes=settings.kafka_fetch_max_bytes,
        **options,
    )
    try:
        await consumer.start()
        # aiokafka's group-less coordinator starts a task in start(), and its stop()
        # raises CancelledError if that task has not run yet: a tool that fails at once
        # (a partition that does not exist) would end on it instead of its own error.
        await asyncio.sleep(0)
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, in order; ``ToolError`` if the topic does not exist."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ToolError(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], wait_seconds: float = 30.0
) -> dict[TopicPartition, int]:
    """The high watermark of each partition now, from fetch responses.

    Assigns ``tps`` (replacing any assignment) and leaves their positions undefined:
    seek before reading.
    """
    consumer.assign(list(tps))
    await consumer.seek_to_beginning(*tps)
    deadline = time.monotonic() + wait_seconds
    while True:
        await consumer.getmany(*tps, timeout_ms=100, max_records=1)
        marks = {tp: consumer.highwater(tp) for tp in tps}
        if all(mark is not None for mark in marks.values()):
            return {tp: int(mark) for tp, mark in marks.items() if mark is not None}
        if time.monotonic() > deadline:
            raise ToolError("the broker did not report the high watermarks in time")


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, OffsetRange],
    max_records: int,
    fetch_timeout_ms: int = 200,
) -> AsyncGenerator[list[KafkaRecord], None]:
    """Yield batches of the records in ``ranges``, in offset order per partition, then end.

    A partition is done once its position reaches the end of its range (gaps left by
    compaction or transaction markers included).
    """
    pending = {tp: r for tp, r in ranges.items() if r.size > 0}
    if not pending:
        return
    consumer.assign(list(pending))
    for tp, offsets in pending.items():
        consumer.seek(tp, offsets.start)
    while pending:
        fetched = await consumer.getmany(
            *pending, timeout_ms=fetch_timeout_ms, max_records=max_records
        )
        batch: list[KafkaRecord] = []
        for tp, messages in fetched.items():
            end = pending[tp].end if tp in pending else -1
            batch.extend(KafkaRecord.from_consumer_record(m) for m in messages if m.offset < end)
        for tp in list(pending):
            position = await consumer.position(tp)
            if position >= pending[tp].end:
                consumer.pause(tp)
                del pending[tp]
        if batch:
            yield batch


async def to_now(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, OffsetRange]:
    """Every partition of ``topic`` from its first offset to its high watermark now."""
    tps = await partitions_of(consumer, topic)
    highs = await high_watermarks(consumer, tps)
    begins = await consumer.beginning_offsets(tps)
    return {tp: OffsetRange(begins[tp], highs[tp]) for tp in tps}


async def first_records(
    consumer: AIOKafkaConsumer, ranges: Mapping[TopicPartition, OffsetRange]
) -> dict[TopicPartition, KafkaRecord | None]:
    """The first record of each range; None for a range that holds none (empty, or a gap
    left by compaction, retention or transaction markers). Partitions already answered
    are read on until the others are: a few records more, not the whole range."""
    found: dict[TopicPartition, KafkaRecord | None] = dict.fromkeys(ranges)
    wanted = {tp for tp, offsets in ranges.items() if offsets.size > 0}
    async with aclosing(read_ranges(consumer, ranges, max(1, len(wanted)))) as batches:
        async for batch in batches:
            for record in batch:
                tp = TopicPartition(record.topic, record.partition)
                if tp in wanted:
                    found[tp] = record
                    wanted.discard(tp)
            if not wanted:
                break
    return found
