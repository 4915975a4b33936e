"""Finding one event: the record at a position (read by assignment and decoded as the
consumer decodes it), its row in the event log or in the parked events, and its dead
letters (the dead-letter topic read up to now). Nothing is written and no group is
joined."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.core.decode import decode
from consumer.core.projection import EventKey
from consumer.core.records import KafkaRecord
from consumer.edges.store import Store
from consumer.settings import Settings
from consumer.tools.errors import ToolError
from consumer.tools.event.answer import DeadLetterSeen, EventAnswer, RecordSeen, record_key
from consumer.tools.event.query import ByKey, ByPosition, Position, is_letter_of
from consumer.tools.kafkareader import (
    OffsetRange,
    assigned_consumer,
    first_records,
    high_watermarks,
    partitions_of,
    read_ranges,
    to_now,
)
from consumer.tools.replay.ranges import check_pairs


async def find_event(settings: Settings, store: Store, query: ByKey | ByPosition) -> EventAnswer:
    """Where the event asked about is: the event log, the parked events, the dead-letter
    topic, or none of them."""
    lookups = store.lookups()
    dlq_topic = settings.kafka_dlq_topic
    if isinstance(query, ByKey):
        answer = EventAnswer(query, dlq_topic, (query.source, query.event_id), None)
    else:
        topic = query.topic or settings.kafka_topic
        query = ByPosition(query.partition, query.offset, topic)
        async with assigned_consumer(settings) as consumer:
            record = await record_at(consumer, topic, query.partition, query.offset)
        decoded = decode(record, settings.max_message_bytes)
        stored = await lookups.stored_offsets(settings.kafka_group_id, topic)
        answer = EventAnswer(
            query,
            dlq_topic,
            record_key(record, decoded),
            None,
            record=RecordSeen((topic, query.partition, query.offset), record.timestamp_ms, decoded),
            stored_offset=stored[query.partition].next_offset
            if query.partition in stored
            else None,
        )
    if answer.key is not None:
        answer.logged = await lookups.logged_event(*answer.key)
        answer.parked = await lookups.parked_event(*answer.key)
    position = answer.record.position if answer.record else None
    answer.dead_letters = await dead_letters_of(settings, answer.key, position)
    return answer


async def dead_letters_of(
    settings: Settings, key: EventKey | None, position: Position | None
) -> list[DeadLetterSeen]:
    """The dead letters, up to now, of the event ``key`` or of the record at ``position``."""
    found: list[DeadLetterSeen] = []
    async with assigned_consumer(settings) as consumer:
        ranges = await to_now(consumer, settings.kafka_dlq_topic)
        async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
            found.extend(
                DeadLetterSeen.of(letter) for letter in batch if is_letter_of(letter, key, position)
            )
    return found


async def record_at(
    consumer: AIOKafkaConsumer, topic: str, partition: int, offset: int
) -> KafkaRecord:
    """The record at ``offset``; ``ToolError`` when the partition holds none there."""
    tps = await partitions_of(consumer, topic)
    check_pairs({partition: offset}, [tp.partition for tp in tps], topic)
    tp = TopicPartition(topic, partition)
    high = (await high_watermarks(consumer, [tp]))[tp]
    begin = (await consumer.beginning_offsets([tp]))[tp]
    if not begin <= offset < high:
        held = f"offsets {begin} to {high - 1}" if begin < high else "no records"
        raise ToolError(f"partition {partition} of {topic!r} holds {held}: none at {offset}")
    found = (await first_records(consumer, {tp: OffsetRange(offset, offset + 1)}))[tp]
    if found is None:
        raise ToolError(
            f"partition {partition} of {topic!r} has no record at {offset} "
            "(compacted away, or a transaction marker)"
        )
    return found
