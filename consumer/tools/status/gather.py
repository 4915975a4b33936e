"""Reading what ``status`` shows, without joining the group or writing anything.

The offsets stored in PostgreSQL, and the events parked there; Kafka's committed
offsets, fetched by a client that names the group but never subscribes, so it never
joins it (it sends no JoinGroup and, having no generation, no LeaveGroup); the high
watermarks and the record at each stored offset, read by assignment; and the group's
description, which may fail or say little on some brokers without failing the command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer.edges.kafka import client_options
from consumer.edges.store import Store
from consumer.settings import Settings
from consumer.tools.kafkareader import (
    OffsetRange,
    assigned_consumer,
    first_records,
    high_watermarks,
    partitions_of,
)
from consumer.tools.status.report import (
    GroupView,
    PartitionStatus,
    StatusReport,
    group_view,
    lag_seconds,
    read_from,
)

log = logging.getLogger(__name__)

# The group's description only adds the owners: it is not worth a long wait.
DESCRIBE_TIMEOUT_SECONDS = 10.0


async def gather_status(
    settings: Settings, store: Store, max_lag_seconds: float | None = None
) -> StatusReport:
    """Every partition of KAFKA_TOPIC for KAFKA_GROUP_ID, as it stands now."""
    topic, group_id = settings.kafka_topic, settings.kafka_group_id
    lookups = store.lookups()
    stored = await lookups.stored_offsets(group_id, topic)
    parked = await lookups.parked_summary()
    async with assigned_consumer(settings) as consumer:
        tps = await partitions_of(consumer, topic)
        committed = await committed_offsets(settings, tps)
        highs = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        positions = {
            tp: read_from(
                stored[tp.partition].next_offset if tp.partition in stored else None,
                committed[tp],
                begins[tp],
            )
            for tp in tps
        }
        oldest = await first_records(
            consumer,
            {tp: OffsetRange(max(at, begins[tp]), highs[tp]) for tp, (at, _) in positions.items()},
        )
    now = datetime.now(UTC)
    partitions = []
    for tp in tps:
        record = oldest[tp]
        row = stored.get(tp.partition)
        partitions.append(
            PartitionStatus(
                partition=tp.partition,
                stored_offset=row.next_offset if row else None,
                kafka_committed=committed[tp],
                high_watermark=highs[tp],
                read_from=positions[tp][1],
                position=positions[tp][0],
                lag_seconds=lag_seconds(now, record.timestamp_ms if record else None),
                oldest_unapplied=None
                if record is None or record.timestamp_ms < 0
                else (record.offset, datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)),
                last_commit=row.updated_at if row else None,
            )
        )
    group = await describe_group(settings, group_id, topic)
    return StatusReport(topic, group_id, now, group, partitions, max_lag_seconds, parked)


async def committed_offsets(
    settings: Settings, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """The offsets the group committed to Kafka (None where it committed none).

    The client names the group but never subscribes: aiokafka's coordinator then waits
    for a subscription and joins nothing, and ``committed`` is a plain OffsetFetch.
    """
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=settings.kafka_group_id, enable_auto_commit=False
    )
    try:
        await consumer.start()
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def describe_group(settings: Settings, group_id: str, topic: str) -> GroupView:
    """The group's state and the owners of ``topic``'s partitions; whatever fails here
    (a broker without DescribeGroups, a slow answer) leaves the owners unknown, and the
    command goes on."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        answers = await asyncio.wait_for(
            admin.describe_consumer_groups([group_id]), DESCRIBE_TIMEOUT_SECONDS
        )
    except Exception as exc:  # the owners are extra: never fail for them
        log.debug("the group could not be described", exc_info=exc)
        return GroupView.unknown(f"the group could not be described ({type(exc).__name__})")
    finally:
        await admin.close()
    return group_view([g for answer in answers for g in answer.groups], group_id, topic)
