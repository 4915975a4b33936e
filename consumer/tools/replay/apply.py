"""A replay's pass: read the planned ranges and write them through the live write path."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from consumer import collector
from consumer.core.batchplan import BatchPlan
from consumer.core.records import KafkaRecord
from consumer.edges.deadletter import DeadLetter, DeadLetterQueue
from consumer.edges.kafka import max_request_bytes
from consumer.edges.store import Store
from consumer.pipeline.batches import split_batch, write_batch
from consumer.settings import Settings
from consumer.tools.clients import tool_producer
from consumer.tools.kafkareader import assigned_consumer, read_ranges
from consumer.tools.replay.progress import make_progress
from consumer.tools.replay.ranges import End, Start, resolve_ranges
from consumer.tools.replay.summary import PartitionSummary, ReplaySummary, tally

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    start: Start
    end: End = "now"
    topic: str | None = None
    dry_run: bool = False
    given: tuple[str, str] | None = None  # --from and --to as typed, to quote in a refusal


async def replay(
    settings: Settings,
    store: Store,
    request: ReplayRequest,
    interactive: bool | None = False,
) -> ReplaySummary:
    """Replay the range; returns the summary. Dead letters go to the DLQ unless dry run."""
    topic = request.topic or settings.kafka_topic
    group = f"{settings.kafka_group_id}-replay"
    async with assigned_consumer(settings) as consumer:
        ranges = await resolve_ranges(consumer, topic, request.start, request.end, request.given)
        summary = ReplaySummary(topic, request.dry_run)
        for tp, r in ranges.items():
            summary.partitions[tp.partition] = PartitionSummary(start=r.start, end=r.end)
        log.info(
            "replaying",
            extra={
                "topic": topic,
                "dry_run": request.dry_run,
                "ranges": {tp.partition: [r.start, r.end] for tp, r in ranges.items()},
            },
        )
        async with tool_producer(settings, enabled=not request.dry_run) as producer:
            dead_letters = None
            if producer is not None:
                dead_letters = DeadLetterQueue(
                    producer, settings.kafka_dlq_topic, group, max_request_bytes(settings)
                )
            progress = make_progress(sum(r.size for r in ranges.values()), interactive)
            batch_size = settings.kafka_max_poll_records
            # One batch at a time: no write lanes beside it.
            with collector.batch_thresholds(batch_size, concurrent_batches=1):
                try:
                    async for records in read_ranges(consumer, ranges, batch_size):
                        plan, dead = await _apply_batch(store, records, settings, dead_letters)
                        tally(summary, records, plan, dead)
                        progress.advance(summary)
                finally:
                    progress.close()
    return summary


async def _apply_batch(
    store: Store,
    records: Sequence[KafkaRecord],
    settings: Settings,
    dead_letters: DeadLetterQueue | None,
) -> tuple[BatchPlan, list[DeadLetter]]:
    """One batch through the live write path; rolled back when ``dead_letters`` is None."""
    accepted, poison, _ = split_batch(records, settings.max_message_bytes)
    return await write_batch(store, accepted, poison, dead_letters)
