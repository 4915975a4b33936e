"""The question `event` is asked (by source and id, or by position) and how a dead letter
answers to it. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from user_events_schemas import DLQ_ORIGINAL_OFFSET, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_TOPIC

from consumer.core.identity import event_key
from consumer.core.projection import EventKey
from consumer.core.records import KafkaRecord
from consumer.tools.arguments import parse_position
from consumer.tools.dlq.letters import header
from consumer.tools.errors import BadArgument

Position = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True, slots=True)
class ByKey:
    """``--source S --id ID``."""

    source: str
    event_id: str


@dataclass(frozen=True, slots=True)
class ByPosition:
    """``--at PARTITION:OFFSET`` of ``topic`` (None: KAFKA_TOPIC)."""

    partition: int
    offset: int
    topic: str | None = None


def parse_query(
    source: str | None, event_id: str | None, at: str | None, topic: str | None
) -> ByKey | ByPosition:
    """The question asked: by source and id, or by position (one of the two, whole)."""
    if at is not None:
        if source is not None or event_id is not None:
            raise BadArgument("ask by --source and --id, or by --at, not both")
        partition, offset = parse_position(at, "--at")
        return ByPosition(partition, offset, topic)
    if topic is not None:
        raise BadArgument("--topic goes with --at")
    if not source or not event_id:
        raise BadArgument("give --source and --id together, or --at PARTITION:OFFSET")
    return ByKey(source, event_id)


def original_position(letter: KafkaRecord) -> Position | None:
    """Where the dead-lettered record was, as its ``dlq.original.*`` headers say."""
    topic = header(letter.headers, DLQ_ORIGINAL_TOPIC)
    partition = header(letter.headers, DLQ_ORIGINAL_PARTITION)
    offset = header(letter.headers, DLQ_ORIGINAL_OFFSET)
    if topic is None or partition is None or offset is None:
        return None
    try:
        return topic, int(partition), int(offset)
    except ValueError:
        return None


def is_letter_of(letter: KafkaRecord, key: EventKey | None, position: Position | None) -> bool:
    """Whether ``letter`` holds the event ``key`` (by its CloudEvents source and id, in
    either mode) or the record at ``position``."""
    if position is not None and original_position(letter) == position:
        return True
    return key is not None and event_key(letter) == key
