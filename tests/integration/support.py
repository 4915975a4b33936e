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


async def new_settings(
    bootstrap: str, database: str, partitions: int = 3, **overrides: Any
) -> Settings:
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


async def logged_at_least(database: str, n: int) -> bool:
    """At least ``n`` rows in the event log (False while the tables do not exist yet)."""
    try:
        return await count_logged(database) >= n
    except (OSError, asyncpg.PostgresError):
        return False


async def logged_is(database: str, n: int) -> bool:
    try:
        return await count_logged(database) == n
    except (OSError, asyncpg.PostgresError):
        return False


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


def users_by_id(rows: Sequence[asyncpg.Record]) -> dict[str, dict[str, Any]]:
    return {row["user_id"]: dict(row) for row in rows}


def user_history(users: int, updates: int, source: str = "/history") -> list[dict[str, Any]]:
    """Per user: a create then ``updates`` renames, sequenced; interleaved across users."""
    from datetime import UTC, datetime, timedelta

    from schemas import build_event

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for seq in range(1, updates + 2):
        for u in range(users):
            user = f"user-{u}"
            when = t0 + timedelta(seconds=seq)
            if seq == 1:
                data = {"email": f"{user}@example.com", "name": f"{user} v1"}
                events.append(
                    build_event(
                        "user.created",
                        user,
                        data,
                        source=source,
                        sequence=1,
                        time=when,
                        event_id=f"{user}-1",
                    )
                )
            else:
                events.append(
                    build_event(
                        "user.updated",
                        user,
                        {"name": f"{user} v{seq}"},
                        source=source,
                        sequence=seq,
                        time=when,
                        event_id=f"{user}-{seq}",
                    )
                )
    return events


async def assert_history_applied_exactly_once(database: str, users: int, updates: int) -> None:
    """The state and log a single clean pass over ``user_history`` leaves behind."""
    rows = await fetch(database, "SELECT user_id, email, name, status FROM users ORDER BY user_id")
    expected = sorted(
        (f"user-{u}", f"user-{u}@example.com", f"user-{u} v{updates + 1}", "active")
        for u in range(users)
    )
    assert [tuple(r) for r in rows] == expected
    log = await fetch(database, "SELECT source, event_id, outcome FROM user_events")
    assert len(log) == users * (updates + 1)
    assert len({(r["source"], r["event_id"]) for r in log}) == len(log)
    assert {r["outcome"] for r in log} == {"applied"}


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a `user-events-consumer run` subprocess use ``settings``."""
    import os

    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        KAFKA_TOPIC=settings.kafka_topic,
        KAFKA_DLQ_TOPIC=settings.kafka_dlq_topic,
        KAFKA_GROUP_ID=settings.kafka_group_id,
        KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
        KAFKA_FETCH_TIMEOUT_MS=str(settings.kafka_fetch_timeout_ms),
        DATABASE_URL=settings.database_url.get_secret_value(),
        HTTP_PORT="0",
        RETRY_MAX_SECONDS="1",
        **extra,
    )
    return env
