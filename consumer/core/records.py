"""What the pipeline passes between stages: a Kafka record and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

# A header's value may be null on the wire.
Headers = tuple[tuple[str, bytes | None], ...]


class KafkaRecord(NamedTuple):
    """One record as fetched, with its provenance; the value is kept byte for byte.

    A NamedTuple rather than a frozen dataclass: one is built per record on the hot path.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def from_consumer_record(cls, message: Any) -> KafkaRecord:
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.key,
            message.value,
            tuple(message.headers) if message.headers else (),
        )

    def where(self) -> dict[str, Any]:
        """Log context naming this record (never its content)."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class Reason(StrEnum):
    """Why a record is poison: the ``dlq.reason`` header and the metric label."""

    UNDECODABLE = "undecodable"
    INVALID = "invalid"
    UNKNOWN_TYPE = "unknown_type"
    CONFLICT = "conflict"
    UNKNOWN_USER = "unknown_user"
    TOO_LARGE = "too_large"


class FieldError(NamedTuple):
    """One thing wrong with a record: where (a dotted path into the event, ``""`` for the
    event or record as a whole) and what (pydantic's error type, or the consumer's own
    kind: ``too_large``, ``conflict``...). Never an input value. ``user_id``: for a
    ``conflict``, the user who holds the email, when known."""

    loc: str
    type: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A poison verdict: the reason and a short message free of the payload's personal data.

    ``errors``: the same, structured (the ``dlq.errors`` header); empty where the
    rejection site has nothing more to say than its reason. ``unread``: the client could
    not parse the record at all, so its dead letter can hold nothing of it but where it
    was."""

    reason: Reason
    error: str
    unread: bool = False
    errors: tuple[FieldError, ...] = ()


class Outcome(StrEnum):
    """What an accepted record did to the projection (the metric's ``outcome`` label)."""

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
