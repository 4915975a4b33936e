"""What the pipeline passes between stages: a Kafka record and what became of it."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

# The rejection vocabulary is the contract's: its validator reports what the consumer
# would dead-letter a record with.
from user_events_schemas import FieldError as FieldError
from user_events_schemas import Reason as Reason
from user_events_schemas import Rejection as Rejection

# A header's value may be null on the wire.
Headers = tuple[tuple[str, bytes | None], ...]


class FetchedRecord(Protocol):
    """What the pipeline reads of a record between the fetch and the decode: aiokafka's
    ``ConsumerRecord``, or a stand-in for one the client could not parse."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # ms; -1 when the record carries none
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


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
    def from_consumer_record(cls, message: FetchedRecord) -> KafkaRecord:
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


class Outcome(StrEnum):
    """What an accepted record did to the projection (the metric's ``outcome`` label)."""

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    DEAD_LETTERED = "dead_lettered"
