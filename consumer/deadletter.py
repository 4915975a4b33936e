"""The dead-letter producer: poison records, byte for byte, plus their provenance."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from consumer.records import KafkaRecord, Rejection

DeadLetter = tuple[KafkaRecord, Rejection]

# Why a dead letter's value is not the record's own, in the ``dlq.value`` header.
VALUE_OMITTED = "omitted: too large to dead-letter; read it at its original offset"
VALUE_WAS_NULL = "null: the record had neither key nor value; sent with an empty value"
# Room the producers keep above MAX_MESSAGE_BYTES, so that a record within the limit
# still fits with its dlq.* headers.
HEADERS_HEADROOM_BYTES = 16 * 1024
# A record's framing in a batch, beyond its key, value and headers (generously).
_RECORD_OVERHEAD_BYTES = 1024


def dead_letter_headers(
    record: KafkaRecord, rejection: Rejection, group_id: str, failed_at: datetime
) -> list[tuple[str, bytes]]:
    """The record's own headers, unchanged, followed by the ``dlq.*`` provenance headers."""
    provenance = {
        "dlq.reason": str(rejection.reason),
        "dlq.error": rejection.error,
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.original.timestamp": str(record.timestamp_ms),
        "dlq.consumer.group": group_id,
        "dlq.failed.at": failed_at.isoformat(timespec="milliseconds"),
    }
    return [*record.headers, *((name, value.encode()) for name, value in provenance.items())]


def dead_letter_message(
    record: KafkaRecord,
    rejection: Rejection,
    group_id: str,
    failed_at: datetime,
    max_bytes: int,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of a record's dead letter.

    The value is the record's own, byte for byte, except in two cases that the producer
    would refuse on every retry, stopping the partition: a dead letter over
    ``max_bytes`` (the producer's limit; only a ``too_large`` record gets there) keeps
    the provenance without the value, and a record with neither key nor value gets an
    empty value. The ``dlq.value`` header says which.
    """
    headers = dead_letter_headers(record, rejection, group_id, failed_at)
    key, value = record.key, record.value
    size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers)
    if size > max_bytes - _RECORD_OVERHEAD_BYTES:
        value = None
        headers.append(("dlq.value", VALUE_OMITTED.encode()))
    if value is None and key is None:
        value = b""
        if record.value is None:
            headers.append(("dlq.value", VALUE_WAS_NULL.encode()))
    return key, value, headers


class DeadLetterQueue:
    """Sends poison records to the dead-letter topic and waits until they are acknowledged."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, group_id: str, max_bytes: int
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.group_id = group_id
        self.max_bytes = max_bytes  # the producer's max_request_size

    async def send_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Returns once every record is acknowledged; raises if any was not."""
        if not dead_letters:
            return
        failed_at = datetime.now(UTC)
        deliveries = []
        for record, rejection in dead_letters:
            key, value, headers = dead_letter_message(
                record, rejection, self.group_id, failed_at, self.max_bytes
            )
            deliveries.append(
                await self.producer.send(self.topic, value=value, key=key, headers=headers)
            )
        await asyncio.gather(*deliveries)
