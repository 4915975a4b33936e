"""The dead-letter producer: poison records, byte for byte, plus their provenance.

Whatever a record holds, its dead letter is written: a letter the producer or the broker
refuses as built is sent again alone, then without the record's value, then without its
key, then without its own headers, always with the ``dlq.*`` provenance headers, which
say what was dropped. Only a broker that refuses even the provenance alone (a
misconfigured dead-letter topic) stops the batch, loudly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownError,
    UnsupportedForMessageFormatError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from user_events_schemas import (
    DLQ_CONSUMER_GROUP,
    DLQ_DROPPED,
    DLQ_ERROR,
    DLQ_ERRORS,
    DLQ_FAILED_AT,
    DLQ_MOST_ERRORS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_ORIGINAL_TOPIC,
    DLQ_PARKED_AT,
    DLQ_PARKED_SECONDS,
    DLQ_REASON,
    DLQ_VALUE,
)

from consumer.core.records import FieldError, Headers, KafkaRecord, Rejection

log = logging.getLogger(__name__)

DeadLetter = tuple[KafkaRecord, Rejection]
OutgoingHeaders = list[tuple[str, bytes | None]]
# Where a record was: (topic, partition, offset).
RecordAt = tuple[str, int, int]

# What a dead letter loses, in this order, when it cannot be sent whole. The
# ``dlq.dropped`` header names what it lost ("value", "value,key", "value,key,headers").
DROP_ORDER = ("value", "key", "headers")
# The ``dlq.errors`` header holds at most DLQ_MOST_ERRORS entries, each string cut at
# _MOST_CHARS: a provenance header stays small whatever the record.
_MOST_CHARS = 200
# The ``dlq.value`` header: a record with neither key nor value is sent with an empty
# value, since Kafka producers refuse a record with neither.
VALUE_WAS_NULL = "null: the record had neither key nor value; sent with an empty value"
# Room the producers keep above MAX_MESSAGE_BYTES, so that a record within the limit
# still fits with its dlq.* headers.
HEADERS_HEADROOM_BYTES = 16 * 1024

# What a broker or the producer answers about one record (its size, its content, a topic
# policy), as opposed to the broker being unreachable: sending it again as it is would
# be refused again. UnknownError stands for codes aiokafka does not name, such as
# INVALID_RECORD (87).
REFUSALS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    PolicyViolationError,
    UnknownError,
)


class DeadLetterRefused(Exception):
    """The broker refused a dead letter even with nothing of the record left in it but its
    provenance: the dead-letter topic is misconfigured. Not transient."""


class DeadLetterMessage(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: OutgoingHeaders
    dropped: tuple[str, ...]


def provenance_headers(
    record: KafkaRecord,
    rejection: Rejection,
    group_id: str,
    failed_at: datetime,
    parked_at: datetime | None = None,
) -> OutgoingHeaders:
    """The ``dlq.*`` headers: why the record is poison and where it came from (and, for a
    parked event that expired, since when it waited)."""
    provenance = {
        DLQ_REASON: str(rejection.reason),
        DLQ_ERROR: rejection.error,
        DLQ_ERRORS: errors_json(rejection),
        DLQ_ORIGINAL_TOPIC: record.topic,
        DLQ_ORIGINAL_PARTITION: str(record.partition),
        DLQ_ORIGINAL_OFFSET: str(record.offset),
        DLQ_ORIGINAL_TIMESTAMP: str(record.timestamp_ms),
        DLQ_CONSUMER_GROUP: group_id,
        DLQ_FAILED_AT: failed_at.isoformat(timespec="milliseconds"),
    }
    if parked_at is not None:
        provenance[DLQ_PARKED_AT] = parked_at.isoformat(timespec="milliseconds")
        provenance[DLQ_PARKED_SECONDS] = str(max(0, int((failed_at - parked_at).total_seconds())))
    return [(name, value.encode()) for name, value in provenance.items()]


def errors_json(rejection: Rejection) -> str:
    """The ``dlq.errors`` header's value; a rejection without errors of its own gets one
    entry naming its reason (``unparseable`` for a record the client could not parse)."""
    errors = rejection.errors or (
        FieldError("", "unparseable" if rejection.unread else str(rejection.reason)),
    )
    entries = []
    for error in errors[:DLQ_MOST_ERRORS]:
        entry = {"loc": error.loc[:_MOST_CHARS], "type": error.type[:_MOST_CHARS]}
        if error.user_id is not None:
            entry["user_id"] = error.user_id[:_MOST_CHARS]
        entries.append(entry)
    return orjson.dumps(entries).decode()


def dead_letter_headers(
    record: KafkaRecord, rejection: Rejection, group_id: str, failed_at: datetime
) -> OutgoingHeaders:
    """The record's own headers, unchanged, followed by the ``dlq.*`` provenance headers."""
    return [*record.headers, *provenance_headers(record, rejection, group_id, failed_at)]


def dead_letter_message(
    record: KafkaRecord,
    rejection: Rejection,
    group_id: str,
    failed_at: datetime,
    max_bytes: int,
    at_least_dropped: int = 0,
    parked_at: datetime | None = None,
) -> DeadLetterMessage:
    """The dead letter of ``record``: its key, value and headers byte for byte, plus the
    provenance headers, without the first ``at_least_dropped`` parts of ``DROP_ORDER``,
    and without as many more as it takes to fit in ``max_bytes`` (the producer's limit,
    measured as the producer measures it)."""
    provenance = provenance_headers(record, rejection, group_id, failed_at, parked_at)
    key, value, own_headers = record.key, record.value, record.headers
    if rejection.unread:
        at_least_dropped = len(DROP_ORDER)  # nothing of it was read: say so
    dropped: list[str] = []
    for part in DROP_ORDER:
        enough = len(dropped) >= at_least_dropped
        if enough and _fits(key, value, own_headers, provenance, max_bytes):
            break
        dropped.append(part)
        if part == "value":
            value = None
        elif part == "key":
            key = None
        else:
            own_headers = ()
    headers: OutgoingHeaders = [*own_headers, *provenance]
    if dropped:
        headers.append((DLQ_DROPPED, ",".join(dropped).encode()))
    if key is None and value is None:
        value = b""
        if not dropped:
            headers.append((DLQ_VALUE, VALUE_WAS_NULL.encode()))
    return DeadLetterMessage(key, value, headers, tuple(dropped))


def _fits(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    provenance: OutgoingHeaders,
    max_bytes: int,
) -> bool:
    # Room for the dlq.dropped header this call may still add.
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        key, value, [*headers, *provenance]
    )
    return size + 64 <= max_bytes


def _at(record: KafkaRecord) -> RecordAt:
    return (record.topic, record.partition, record.offset)


class DeadLetterQueue:
    """Sends poison records to the dead-letter topic and waits until they are acknowledged."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        group_id: str,
        max_bytes: int,
        start_producer: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.group_id = group_id
        self.max_bytes = max_bytes  # the producer's max_request_size
        self._start_producer = start_producer

    async def send_all(
        self, dead_letters: Sequence[DeadLetter], parked: Mapping[RecordAt, datetime] | None = None
    ) -> None:
        """Returns once every record's dead letter is acknowledged; raises if one was not
        (a transient failure: the batch is retried) or if one is refused even bare.
        ``parked``: when each expired parked event among them was parked."""
        if not dead_letters:
            return
        parked = parked or {}
        failed_at = datetime.now(UTC)
        refused: list[DeadLetter] = []
        deliveries: list[tuple[DeadLetter, asyncio.Future[object]]] = []
        for dead in dead_letters:
            try:
                parked_at = parked.get(_at(dead[0]))
                deliveries.append((dead, await self._send(dead, failed_at, 0, parked_at)))
            except REFUSALS:
                refused.append(dead)  # by the producer itself, before sending anything
        outcomes = await asyncio.gather(*(f for _, f in deliveries), return_exceptions=True)
        failure: BaseException | None = None
        broker_refused = False
        for (dead, _), outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, REFUSALS):
                refused.append(dead)
                broker_refused = True
            elif isinstance(outcome, BaseException):
                failure = failure or outcome
        if broker_refused or isinstance(failure, OutOfOrderSequenceNumber):
            await self._renew_producer()
        if failure is not None:
            raise failure
        for dead in refused:
            await self._send_alone(dead, failed_at, parked.get(_at(dead[0])))

    async def _send(
        self,
        dead: DeadLetter,
        failed_at: datetime,
        at_least_dropped: int,
        parked_at: datetime | None,
    ) -> asyncio.Future[object]:
        record, rejection = dead
        message = dead_letter_message(
            record, rejection, self.group_id, failed_at, self.max_bytes, at_least_dropped, parked_at
        )
        future: asyncio.Future[object] = await self.producer.send(
            self.topic, value=message.value, key=message.key, headers=message.headers
        )
        return future

    async def _send_alone(
        self, dead: DeadLetter, failed_at: datetime, parked_at: datetime | None
    ) -> None:
        """Send a refused dead letter by itself (the broker may have refused the batch it
        was in), then with one more part dropped at each refusal."""
        record, _ = dead
        refusal: Exception | None = None
        for at_least_dropped in range(len(DROP_ORDER) + 1):
            try:
                delivery = await self._send(dead, failed_at, at_least_dropped, parked_at)
            except REFUSALS as exc:  # by the producer: nothing was sent
                refusal = exc
            else:
                try:
                    await delivery
                    return
                except REFUSALS as exc:  # by the broker
                    refusal = exc
                    await self._renew_producer()
            log.warning(
                "a dead letter was refused; dropping more of it",
                extra={**record.where(), "error": type(refusal).__name__},
            )
        raise DeadLetterRefused(
            f"the dead-letter topic refused the provenance of {record.topic}/"
            f"{record.partition}@{record.offset} alone: {type(refusal).__name__}"
        ) from refusal

    async def _renew_producer(self) -> None:
        """An idempotent producer numbers its records per partition, and keeps the numbers
        of a batch the broker refused: every later send to that partition would then be
        out of sequence. A new producer starts a new sequence. Sends in flight on the old
        one finish (or fail, and their batch is retried) before it closes."""
        if self._start_producer is None:
            return
        old, self.producer = self.producer, await self._start_producer()
        await old.stop()
