"""The dead-letter producer: poison records, byte for byte, plus their provenance."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from consumer.records import KafkaRecord, Rejection

DeadLetter = tuple[KafkaRecord, Rejection]


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


class DeadLetterQueue:
    """Sends poison records to the dead-letter topic and waits until they are acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, group_id: str) -> None:
        self.producer = producer
        self.topic = topic
        self.group_id = group_id

    async def send_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Returns once every record is acknowledged; raises if any was not."""
        if not dead_letters:
            return
        failed_at = datetime.now(UTC)
        deliveries = [
            await self.producer.send(
                self.topic,
                value=record.value,
                key=record.key,
                headers=dead_letter_headers(record, rejection, self.group_id, failed_at),
            )
            for record, rejection in dead_letters
        ]
        await asyncio.gather(*deliveries)
