"""``dlq show PARTITION:OFFSET``: one dead letter, its provenance, errors, headers, key and
value; emails and names masked unless asked otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from user_events_schemas import DLQ_ERRORS, DLQ_PREFIX

from consumer.core.identity import event_source
from consumer.core.records import KafkaRecord
from consumer.settings import Settings
from consumer.tools.arguments import check_partitions
from consumer.tools.dlq.letters import describe_errors, errors_of, rfc3339, written_at
from consumer.tools.dlq.masking import mask_text, masked_headers, show_bytes
from consumer.tools.kafkareader import (
    OffsetRange,
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)


@dataclass(frozen=True, slots=True)
class ShowRequest:
    partition: int
    offset: int
    reveal: bool = False


@dataclass(frozen=True, slots=True)
class ShownLetter:
    """A dead letter as ``dlq show`` prints it; ``letter`` is None when there is none at
    that position (then the exit code is 1)."""

    topic: str
    request: ShowRequest
    letter: KafkaRecord | None
    held: OffsetRange  # the offsets the partition holds now

    @property
    def complete(self) -> bool:
        return self.letter is not None

    def to_json(self) -> dict[str, Any]:
        where = {
            "topic": self.topic,
            "partition": self.request.partition,
            "offset": self.request.offset,
        }
        letter = self.letter
        if letter is None:
            return where | {"found": False, "first": self.held.start, "end": self.held.end}
        reveal = self.request.reveal
        headers = masked_headers(letter.headers, reveal=reveal)
        source = event_source(letter)
        return where | {
            "found": True,
            "masked": not reveal,
            "timestamp": rfc3339(written_at(letter)),
            "provenance": {
                n: v for n, v in headers if n.startswith(DLQ_PREFIX) and n != DLQ_ERRORS
            },
            "errors": errors_of(letter.headers),
            "source": source if reveal or source is None else mask_text(source),
            "headers": [[n, v] for n, v in headers if not n.startswith(DLQ_PREFIX)],
            "key": show_bytes(letter.key, reveal=reveal),
            "value": show_bytes(letter.value, reveal=reveal),
        }

    def render(self) -> str:
        where = f"{self.request.partition}:{self.request.offset}"
        if self.letter is None:
            if not self.held.size:
                return f"no dead letter at {where} of {self.topic} (the partition is empty)"
            return (
                f"no dead letter at {where} of {self.topic} (partition "
                f"{self.request.partition} holds offsets {self.held.start} to {self.held.end - 1})"
            )
        data = self.to_json()
        lines = [f"dead letter {where} of {self.topic}, written {data['timestamp']}"]
        lines += _section("provenance", list(data["provenance"].items()))
        lines.append("errors")
        if data["errors"] is None:
            lines.append(f"  (no {DLQ_ERRORS} header: written before it existed)")
        else:
            lines += [f"  {describe_errors([entry])}" for entry in data["errors"]]
        lines += _section("headers", data["headers"])
        lines.append(f"key: {data['key'] if data['key'] is not None else '(null)'}")
        reveal = self.request.reveal
        lines.append(
            "value:" if reveal else "value (emails and names masked; --reveal shows them):"
        )
        value = show_bytes(self.letter.value, reveal=reveal, indent=2)
        lines.append(value if value is not None else "(null)")
        return "\n".join(lines)


def _section(title: str, pairs: list[Any]) -> list[str]:
    if not pairs:
        return [title, "  (none)"]
    width = max(len(name) for name, _ in pairs)
    return [title, *(f"  {name.ljust(width)}  {value}" for name, value in pairs)]


async def show_dead_letter(settings: Settings, request: ShowRequest) -> ShownLetter:
    """Read the dead letter at ``request``'s position; ``BadArgument`` if the topic has no
    such partition."""
    topic = settings.kafka_dlq_topic
    async with assigned_consumer(settings) as consumer:
        tps = await partitions_of(consumer, topic)
        tp = TopicPartition(topic, request.partition)
        where = f"{request.partition}:{request.offset}"
        check_partitions("dlq show", where, [request.partition], [t.partition for t in tps], topic)
        high = (await high_watermarks(consumer, [tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        found = None
        if begin <= request.offset < high:
            wanted = {tp: OffsetRange(request.offset, request.offset + 1)}
            async for batch in read_ranges(consumer, wanted, 1):
                found = next((r for r in batch if r.offset == request.offset), found)
    return ShownLetter(topic, request, found, OffsetRange(begin, high))
