"""From ``--from``/``--to`` to an offset range per partition, ending at or before now.

The parsing and the planning are pure; the lookups ask the broker (offsets for a time,
high watermarks, beginnings) and, where its answer to a time cannot be trusted, search.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import OffsetAndTimestamp

from consumer.tools.arguments import (
    PAIRS,
    POSITION,
    check_partitions,
    named,
    parse_pairs,
    parse_time,
)
from consumer.tools.errors import BadArgument
from consumer.tools.kafkareader import OffsetRange, high_watermarks, partitions_of, read_ranges

log = logging.getLogger(__name__)

Earliest = Literal["earliest"]
Now = Literal["now"]
Start = Earliest | datetime | dict[int, int]
End = Now | datetime


# --- pure ---------------------------------------------------------------------


def parse_from(text: str) -> Start:
    """``earliest``, explicit ``partition:offset`` pairs, or an RFC 3339 time."""
    if text.strip() == "earliest":
        return "earliest"
    if PAIRS.match(text) or all(POSITION.match(item) for item in text.split(",")):
        return parse_pairs(text, "--from")
    return parse_time(text, "--from")


def parse_to(text: str) -> End:
    """``now`` (the high watermarks when the replay starts) or an RFC 3339 time."""
    return "now" if text.strip() == "now" else parse_time(text, "--to")


def shown(value: Start | End) -> str:
    """--from or --to as given (for a refusal, when the text typed is not at hand)."""
    if isinstance(value, dict):
        return ",".join(f"{partition}:{offset}" for partition, offset in value.items())
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def check_order(start: Start, end: End, given: tuple[str, str] | None = None) -> None:
    """``BadArgument`` when both are times and --from is not before --to."""
    if isinstance(start, datetime) and isinstance(end, datetime) and start >= end:
        start_text, end_text = given or (shown(start), shown(end))
        raise BadArgument(f"{named('--from', start_text)} is not before {named('--to', end_text)}")


def check_starts(
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    highwaters: Mapping[int, int],
    topic: str,
    given: tuple[str, str],
) -> None:
    """``BadArgument`` when a --from offset is past the partition's end, or after where
    --to ends it."""
    start_text, end_text = given
    for partition, offset in sorted(starts.items()):
        high = highwaters[partition]
        if offset > high:
            raise BadArgument(
                f"{named('--from', start_text)}: offset {offset} is past the end of partition "
                f"{partition} of {topic!r} (its end offset is {high})"
            )
        if partition in ends and offset > ends[partition]:
            raise BadArgument(
                f"{named('--from', start_text)} is after {named('--to', end_text)} on "
                f"partition {partition} (--to ends it at offset {ends[partition]})"
            )


def time_lookup_answer(
    offset: int | None, timestamp: int | None, target_ms: int, highwater: int
) -> int | None:
    """The offset the broker's offset-for-time answer gives, or None when it must be searched.

    Kafka answers the first offset whose timestamp is at or after the target, with that
    record's timestamp, or nothing when no record is that recent (then: the end). An
    answer without a timestamp (-1), or with one older than the target, is no answer.
    """
    if offset is None:
        return highwater
    if timestamp is None or timestamp < 0 or timestamp < target_ms:
        return None
    return min(offset, highwater)


def first_offset_at_or_after(records: Iterable[tuple[int, int]], target_ms: int) -> int | None:
    """The first (offset, timestamp) at or after the target time, in offset order."""
    for offset, timestamp in records:
        if timestamp >= target_ms:
            return offset
    return None


def plan_ranges(
    partitions: Sequence[int],
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    highwaters: Mapping[int, int],
) -> dict[int, OffsetRange]:
    """Per partition: start (0 when unknown) to end, both clamped to the high watermark."""
    planned: dict[int, OffsetRange] = {}
    for partition in partitions:
        high = highwaters[partition]
        end = min(ends.get(partition, high), high)
        start = min(max(0, starts.get(partition, 0)), end)
        planned[partition] = OffsetRange(start, end)
    return planned


def check_pairs(
    pairs: Mapping[int, int],
    partitions: Sequence[int],
    topic: str,
    flag: str | None = None,
    text: str | None = None,
) -> None:
    """``BadArgument`` when ``pairs`` name a partition the topic does not have."""
    given = text if text is not None else ",".join(f"{p}:{o}" for p, o in pairs.items())
    check_partitions(flag, given, pairs, partitions, topic)


# --- the lookups ------------------------------------------------------------------


async def offset_for_time(
    consumer: AIOKafkaConsumer, tp: TopicPartition, moment: datetime, highwater: int
) -> int:
    """The first offset at or after ``moment``: the broker's answer, else a search."""
    target = int(moment.timestamp() * 1000)
    try:
        answer = (await consumer.offsets_for_times({tp: target})).get(tp)
    except UnsupportedVersionError:
        answer = OffsetAndTimestamp(0, -1)
    offset = time_lookup_answer(
        answer.offset if answer else None, answer.timestamp if answer else None, target, highwater
    )
    if offset is not None:
        return offset
    log.info(
        "the broker answered the offset-for-time lookup without a timestamp; "
        "searching by fetching records",
        extra={"topic": tp.topic, "partition": tp.partition},
    )
    return await _search_by_fetching(consumer, tp, target, highwater)


async def _search_by_fetching(
    consumer: AIOKafkaConsumer, tp: TopicPartition, target_ms: int, highwater: int
) -> int:
    """Scan the partition from its beginning for the first record at or after the time.

    A scan, not a bisection: producer timestamps need not grow with offsets, and Kafka's
    own lookup answers the first such offset.
    """
    begin = (await consumer.beginning_offsets([tp]))[tp]
    async for batch in read_ranges(consumer, {tp: OffsetRange(begin, highwater)}, 5000):
        found = first_offset_at_or_after(((r.offset, r.timestamp_ms) for r in batch), target_ms)
        if found is not None:
            return found
    return highwater


async def resolve_ranges(
    consumer: AIOKafkaConsumer,
    topic: str,
    start: Start,
    end: End,
    given: tuple[str, str] | None = None,
) -> dict[TopicPartition, OffsetRange]:
    """Turn --from/--to into an offset range per partition, ending at or before now;
    ``BadArgument`` for a partition the topic lacks, an offset past the end, or a
    reversed range (``given``: --from and --to as typed, to quote)."""
    given = given or (shown(start), shown(end))
    check_order(start, end, given)
    tps = await partitions_of(consumer, topic)
    numbers = [tp.partition for tp in tps]
    if isinstance(start, dict):
        check_pairs(start, numbers, topic, "--from", given[0])
        tps = [tp for tp in tps if tp.partition in start]
        numbers = [tp.partition for tp in tps]
    highwaters = {tp.partition: h for tp, h in (await high_watermarks(consumer, tps)).items()}
    starts: dict[int, int] = {}
    if isinstance(start, dict):
        starts = dict(start)
    elif isinstance(start, datetime):
        for tp in tps:
            starts[tp.partition] = await offset_for_time(
                consumer, tp, start, highwaters[tp.partition]
            )
    else:
        begins = await consumer.beginning_offsets(tps)
        starts = {tp.partition: begins[tp] for tp in tps}
    ends: dict[int, int] = {}
    if isinstance(end, datetime):
        for tp in tps:
            ends[tp.partition] = await offset_for_time(consumer, tp, end, highwaters[tp.partition])
    if isinstance(start, dict):
        check_starts(start, ends, highwaters, topic, given)
    planned = plan_ranges(numbers, starts, ends, highwaters)
    return {TopicPartition(topic, p): r for p, r in planned.items()}
