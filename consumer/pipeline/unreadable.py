"""Records the Kafka client cannot parse: found, and stood in for by dead letters.

aiokafka decodes header names as UTF-8 and checks a record batch's CRC as it unpacks a
fetch. A header name that is not UTF-8 (librdkafka and Go producers can send one) or a
batch corrupted on disk makes every ``getmany`` over its partition raise, so the record
would stop its partition for good, and the service with it. Here the partition is read
again one record at a time up to the record the client cannot parse. That record, and
those behind it in the same record batch (the client parses a batch from its start, so
it cannot reach them either), get stand-ins that are dead-lettered as ``undecodable``
with their offsets, and the partition goes on after them. A batch in a compression the
client has no codec for is read the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

from consumer.core.records import FetchedRecord, Reason, Rejection
from consumer.edges.deadletter import DeadLetter

log = logging.getLogger(__name__)

# What aiokafka raises from ``getmany`` for a record it cannot unpack (a compression
# codec it has no library for included).
UNPARSEABLE = (UnicodeDecodeError, CorruptRecordException, UnsupportedCodecError)
# Offsets probed one by one for the end of an unparseable run, per read-around; the next
# read-around goes on from there.
_MOST_PROBES = 64

UNREADABLE = Rejection(
    Reason.UNDECODABLE,
    "the Kafka client cannot parse this record or the record batch holding it (a header "
    "name that is not UTF-8, or a corrupt batch); read it at its offset with another client",
    unread=True,
)


class StandIn(NamedTuple):
    """Takes the place of a record the client could not parse, where aiokafka's
    ``ConsumerRecord`` would be; nothing of the record is known but where it is."""

    topic: str
    partition: int
    offset: int
    timestamp: int = -1
    key: None = None
    value: None = None
    headers: tuple[()] = ()


async def read_around_unparseable(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, limit: int, wait_ms: int
) -> list[FetchedRecord]:
    """From ``start``: the records of ``tp`` the client can parse, up to ``limit``, read
    one at a time; if it meets one it cannot parse, stand-ins for that offset and every
    offset behind it that the client cannot reach, up to the first it can. ``tp`` is left
    positioned right after what is returned."""
    consumer.seek(tp, start)
    records: list[FetchedRecord] = []
    while len(records) < limit:
        try:
            got = await consumer.getmany(tp, timeout_ms=wait_ms, max_records=1)
        except UNPARSEABLE:
            break
        if not got:
            return records  # read to the end: nothing here the client cannot parse
        records.extend(got[tp])
    else:
        return records
    first = records[-1].offset + 1 if records else start
    end = await _first_parseable_after(consumer, tp, first, wait_ms)
    log.error(
        "records the Kafka client cannot parse; they are dead-lettered by offset",
        extra={"topic": tp.topic, "partition": tp.partition, "offset": first, "until": end},
    )
    consumer.seek(tp, end)
    return [*records, *(StandIn(tp.topic, tp.partition, offset) for offset in range(first, end))]


async def _parses_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, wait_ms: int
) -> bool:
    """Whether the client can read ``tp`` from ``offset`` (or finds nothing there yet)."""
    consumer.seek(tp, offset)
    try:
        await consumer.getmany(tp, timeout_ms=wait_ms, max_records=1)
    except UNPARSEABLE:
        return False
    return True


async def _first_parseable_after(
    consumer: AIOKafkaConsumer, tp: TopicPartition, first: int, wait_ms: int
) -> int:
    """The first offset after ``first`` (which the client cannot parse) that it can read
    from: the end of the record batch holding ``first``, or where the probes stopped.

    One offset at a time: reading from an offset parses its batch from the start, so
    every offset behind an unparseable record in its batch fails too, and the first that
    reads is the next batch's. A search that jumped ahead could skip a readable batch
    between two unparseable ones and dead-letter its records for nothing."""
    highwater: int | None = consumer.highwater(tp)
    offset = first + 1
    while offset < first + 1 + _MOST_PROBES and (highwater is None or offset < highwater):
        if await _parses_at(consumer, tp, offset, wait_ms):
            return offset
        offset += 1
    return offset


def reject_stand_ins(
    messages: Sequence[FetchedRecord], poison: list[DeadLetter]
) -> list[DeadLetter]:
    """``poison`` (decoded from ``messages``) with each stand-in rejected as unreadable,
    not as the null value it carries."""
    stand_ins = {(m.partition, m.offset) for m in messages if type(m) is StandIn}
    if not stand_ins:
        return poison
    return [
        (record, UNREADABLE) if (record.partition, record.offset) in stand_ins else (record, why)
        for record, why in poison
    ]
