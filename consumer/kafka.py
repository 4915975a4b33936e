"""Kafka clients built from the settings, with fallbacks for brokers that lack an API."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownError, UnsupportedVersionError

from consumer.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every Kafka client of the service."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
    }


async def start_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A started producer, idempotent where the broker supports it.

    Some Kafka-compatible brokers answer ``InitProducerId`` with an error; with
    ``KAFKA_ENABLE_IDEMPOTENCE=auto`` the producer then runs without idempotence
    (still ``acks=all``) and says so, instead of refusing to start.
    """
    common = {**client_options(settings), "acks": "all", **options}
    if settings.kafka_enable_idempotence != "false":
        producer = AIOKafkaProducer(enable_idempotence=True, **common)
        try:
            await producer.start()
            return producer
        except (UnknownError, UnsupportedVersionError):
            await producer.stop()
            if settings.kafka_enable_idempotence == "true":
                raise
            log.warning("the broker refused InitProducerId: producing without idempotence")
    producer = AIOKafkaProducer(**common)
    await producer.start()
    return producer


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the topics (name -> partitions) that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                await admin.create_topics(missing)
    finally:
        await admin.close()
