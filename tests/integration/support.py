"""Helpers for integration tests: topics, publishing, reading back, running the service."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.app import run_service
from consumer.kafka import ensure_topics
from consumer.settings import Settings

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def new_settings(bootstrap: str, database: str, partitions: int = 3, **overrides: Any) -> Settings:
    """Settings on fresh topics and a fresh consumer group, the topics created."""
    name = f"ue-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=name,
        kafka_dlq_topic=f"{name}.dlq",
        kafka_group_id=f"{name}-group",
        database_url=database,
        http_port=0,
        http_host="127.0.0.1",
        retry_initial_seconds=0.05,
        retry_max_seconds=1.0,
        kafka_fetch_timeout_ms=100,
        kafka_session_timeout_ms=6000,
        **overrides,
    )
    await ensure_topics(settings, {settings.kafka_topic: partitions, settings.kafka_dlq_topic: 1})
    return settings


async def publish(
    bootstrap: str, topic: str, messages: Iterable[Message], partition: int | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[Any]:
    """Read ``count`` records from the start of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[asyncio.Task[int]]:
    """The real `run` path in this process; stopped (as by SIGTERM) when the block ends."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run_service(settings, stopping=stopping))
    try:
        yield task
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, 30) == 0


async def fetch(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def count_logged(database: str) -> int:
    rows = await fetch(database, "SELECT count(*) AS n FROM user_events")
    return int(rows[0]["n"])


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


def users_by_id(rows: Sequence[asyncpg.Record]) -> dict[str, dict[str, Any]]:
    return {row["user_id"]: dict(row) for row in rows}
