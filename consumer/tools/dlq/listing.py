"""``dlq list``: the dead-letter topic read up to now, filtered, counted and tabled, personal
data masked.

The whole topic is read by assignment, as every tool reads. With ``--since``, a
partition is read from the first dead letter the broker dates at or after that time
(less a margin for clocks), where the broker answers the offset-for-time lookup with a
timestamp; from its beginning where it does not.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import OffsetAndTimestamp
from user_events_schemas import (
    DLQ_ERROR,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
)

from consumer.core.identity import event_source
from consumer.core.records import KafkaRecord
from consumer.settings import Settings
from consumer.tools.dlq.criteria import Criteria
from consumer.tools.dlq.letters import (
    describe_errors,
    errors_of,
    failed_at,
    header,
    reason_of,
    rfc3339,
    written_at,
)
from consumer.tools.dlq.masking import mask_bytes, mask_text, masked_headers
from consumer.tools.kafkareader import (
    OffsetRange,
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)
from consumer.tools.replay.ranges import time_lookup_answer

log = logging.getLogger(__name__)

DEFAULT_LAST = 20
# A dead letter's Kafka timestamp is taken after its dlq.failed.at, by the same clock (the
# producer's). A broker that sets the time itself (LogAppendTime) may run behind it.
CLOCK_MARGIN = timedelta(minutes=15)
_TABLE_ERRORS = 60  # characters of the errors column
Moment = tuple[datetime, int, int]  # failed at, partition, offset


@dataclass(frozen=True, slots=True)
class ListRequest:
    criteria: Criteria = field(default_factory=Criteria)
    last: int = DEFAULT_LAST


def letter_json(letter: KafkaRecord) -> dict[str, Any]:
    """One dead letter for a listing: where, when, why, its source and errors; its key,
    value and headers masked."""
    errors = errors_of(letter.headers)
    source = event_source(letter)
    return {
        "partition": letter.partition,
        "offset": letter.offset,
        "failed_at": rfc3339(failed_at(letter)),
        "reason": reason_of(letter),
        "source": mask_text(source) if source is not None else None,
        "original": {
            "topic": header(letter.headers, DLQ_ORIGINAL_TOPIC),
            "partition": _number(header(letter.headers, DLQ_ORIGINAL_PARTITION)),
            "offset": _number(header(letter.headers, DLQ_ORIGINAL_OFFSET)),
        },
        "error": mask_text(header(letter.headers, DLQ_ERROR) or ""),
        "errors": errors,
        "timestamp": rfc3339(written_at(letter)),
        "key": mask_bytes(letter.key),
        "value": mask_bytes(letter.value),
        "headers": masked_headers(letter.headers),
    }


def _number(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(slots=True)
class DlqSummary:
    """The dead letters that match: counts by reason and original topic, oldest and newest,
    and the last few."""

    topic: str
    keep_last: int = DEFAULT_LAST
    criteria: Criteria = field(default_factory=Criteria)
    read: int = 0
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_original_topic: Counter[str] = field(default_factory=Counter)
    oldest: Moment | None = None
    newest: Moment | None = None
    _last: list[tuple[Moment, KafkaRecord]] = field(default_factory=list)

    def add(self, letter: KafkaRecord) -> None:
        self.read += 1
        if not self.criteria.matches(letter):
            return
        self.total += 1
        self.by_reason[reason_of(letter)] += 1
        self.by_original_topic[header(letter.headers, DLQ_ORIGINAL_TOPIC) or "(none)"] += 1
        at = (failed_at(letter), letter.partition, letter.offset)
        self.oldest = at if self.oldest is None or at < self.oldest else self.oldest
        self.newest = at if self.newest is None or at > self.newest else self.newest
        if len(self._last) < self.keep_last:
            heapq.heappush(self._last, (at, letter))
        elif self.keep_last and at > self._last[0][0]:
            heapq.heapreplace(self._last, (at, letter))

    @property
    def last(self) -> list[KafkaRecord]:
        """The last dead letters kept, by failure time, newest last."""
        return [letter for _, letter in sorted(self._last, key=lambda entry: entry[0])]

    @property
    def complete(self) -> bool:
        """Always: listing refuses nothing."""
        return True

    def to_json(self) -> dict[str, Any]:
        def moment(at: Moment | None) -> dict[str, Any] | None:
            if at is None:
                return None
            return {"failed_at": rfc3339(at[0]), "partition": at[1], "offset": at[2]}

        return {
            "topic": self.topic,
            "filters": self.criteria.to_json(),
            "read": self.read,
            "total": self.total,
            "by_reason": dict(self.by_reason.most_common()),
            "by_original_topic": dict(self.by_original_topic.most_common()),
            "oldest": moment(self.oldest),
            "newest": moment(self.newest),
            "last": [letter_json(letter) for letter in self.last],
        }

    def render(self) -> str:
        data = self.to_json()
        filters = " ".join(
            f"--{name} {value}"
            for name, values in data["filters"].items()
            for value in (values if isinstance(values, list) else [values])
        )
        head = f"dead-letter topic {self.topic}: {self.total} dead letters"
        if filters:
            head += f" match {filters} (of {self.read} read)"
        lines = [head]
        if not self.total:
            return lines[0]
        lines.append("by reason:  " + ", ".join(f"{k} {v}" for k, v in data["by_reason"].items()))
        lines.append(
            "by topic:   " + ", ".join(f"{k} {v}" for k, v in data["by_original_topic"].items())
        )
        for label in ("oldest", "newest"):
            at = data[label]
            lines.append(
                f"{label}:     {at['failed_at']} (partition {at['partition']}, "
                f"offset {at['offset']})"
            )
        if data["last"]:
            lines.append(f"last {len(data['last'])}, newest last:")
            lines.append(_table([_row(letter) for letter in data["last"]]))
        return "\n".join(lines)


_COLUMNS = ("DLQ P:O", "FAILED AT", "REASON", "SOURCE", "FROM", "ERRORS")


def _row(letter: dict[str, Any]) -> list[str]:
    original = letter["original"]
    errors = describe_errors(letter["errors"]) if letter["errors"] is not None else letter["error"]
    if len(errors) > _TABLE_ERRORS:
        errors = errors[: _TABLE_ERRORS - 3] + "..."
    return [
        f"{letter['partition']}:{letter['offset']}",
        letter["failed_at"],
        letter["reason"],
        letter["source"] or "-",
        f"{original['topic'] or '?'}/{original['partition']}@{original['offset']}",
        errors or "-",
    ]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(_COLUMNS), *rows]
    )


async def list_dead_letters(settings: Settings, request: ListRequest) -> DlqSummary:
    """Read the dead-letter topic up to now and summarise the dead letters that match."""
    summary = DlqSummary(settings.kafka_dlq_topic, request.last, request.criteria)
    async with assigned_consumer(settings) as consumer:
        tps = await partitions_of(consumer, settings.kafka_dlq_topic)
        highs = await high_watermarks(consumer, tps)
        starts = await consumer.beginning_offsets(tps)
        if request.criteria.since is not None:
            starts = await _skip_ahead(consumer, request.criteria.since, starts, highs)
        ranges = {tp: OffsetRange(starts[tp], highs[tp]) for tp in tps}
        async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
            for letter in batch:
                summary.add(letter)
    return summary


async def _skip_ahead(
    consumer: AIOKafkaConsumer,
    since: datetime,
    begins: dict[TopicPartition, int],
    highs: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition, the first offset the broker dates at or after ``since`` less the
    margin, where its answer can be trusted; the beginning elsewhere."""
    target = int((since - CLOCK_MARGIN).timestamp() * 1000)
    try:
        answers = await consumer.offsets_for_times(dict.fromkeys(begins, target))
    except UnsupportedVersionError:
        answers = {}
    starts = dict(begins)
    for tp, begin in begins.items():
        answer = answers.get(tp, OffsetAndTimestamp(0, -1))
        found = time_lookup_answer(
            answer.offset if answer else None,
            answer.timestamp if answer else None,
            target,
            highs[tp],
        )
        if found is not None:
            starts[tp] = max(begin, found)
        elif begin < highs[tp]:
            log.info(
                "the broker answered the offset-for-time lookup without a timestamp; "
                "reading the partition from its beginning",
                extra={"topic": tp.topic, "partition": tp.partition},
            )
    return starts
