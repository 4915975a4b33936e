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
from consumer.core.durations import format_duration
from consumer.edges.kafka import ensure_topics
from consumer.settings import Settings

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def new_settings(
    bootstrap: str, database: str, partitions: int = 3, **overrides: Any
) -> Settings:
    """Settings on fresh topics and a fresh consumer group, the topics created."""
    name = f"ue-{uuid.uuid4().hex[:10]}"
    options: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic": name,
        "kafka_dlq_topic": f"{name}.dlq",
        "kafka_group_id": f"{name}-group",
        "database_url": database,
        "http_port": 0,
        "http_host": "127.0.0.1",
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 1.0,
        "kafka_fetch_timeout_ms": 100,
        "kafka_session_timeout_ms": 6000,
    }
    settings = Settings(**{**options, **overrides})
    await ensure_topics(settings, {settings.kafka_topic: partitions, settings.kafka_dlq_topic: 1})
    return settings


async def publish(
    bootstrap: str,
    topic: str,
    messages: Iterable[Message],
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> None:
    """``messages`` on ``topic`` (on ``partition``, at ``timestamp_ms`` when given)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send(
                topic,
                value=value,
                key=key,
                headers=headers,
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
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

    from user_events_schemas import build_event

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
        PARK_TTL=format_duration(settings.park_ttl),
        PARK_SWEEP_INTERVAL_SECONDS=str(settings.park_sweep_interval_seconds),
    )
    env.update(extra)
    return env


# Helpers for the operations, shutdown/rebalance and outage tests.


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of ``GET path`` on the service's HTTP port (blocking: use a thread)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    """``http_get`` off the event loop; (0, "") while nothing answers on the port."""
    try:
        return await asyncio.to_thread(http_get, port, path)
    except OSError:
        return 0, ""


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a Prometheus exposition: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = await get(port, "/metrics")
    assert status == 200, (status, body)
    return metric_samples(body)


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def sample_sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def read_all(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Any]:
    """Every record of ``topic`` up to its high watermark (taken from fetch responses,
    which this broker reports correctly, unlike ``end_offsets``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
            highwaters = [consumer.highwater(tp) for tp in tps]
            positions = [await consumer.position(tp) for tp in tps]
            if all(h is not None and p >= h for p, h in zip(positions, highwaters, strict=True)):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in time")
    finally:
        await consumer.stop()


async def kafka_committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int | None]:
    """The offsets ``group`` committed to Kafka, per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def stored_offsets(database: str, group: str) -> dict[int, int]:
    """The next offsets ``group`` stored in PostgreSQL, per partition."""
    rows = await fetch(
        database,
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1",
        group,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def logged_offsets(database: str) -> dict[int, list[int]]:
    """The Kafka offsets of the event-log rows, sorted, per partition."""
    rows = await fetch(
        database, "SELECT kafka_partition, kafka_offset FROM user_events ORDER BY 1, 2"
    )
    offsets: dict[int, list[int]] = {}
    for row in rows:
        offsets.setdefault(row["kafka_partition"], []).append(row["kafka_offset"])
    return offsets


def start_service_process(settings: Settings, stderr: Any = None, **env: str) -> Any:
    """`user-events-consumer run` in a subprocess; ``env`` overrides ``service_env``."""
    import subprocess
    import sys

    environment = service_env(settings)
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "run"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used, from /proc/<pid>/stat."""
    import os
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def publish_unparseable(
    bootstrap: str, topic: str, partition: int, messages: Sequence[Message], unparseable: int
) -> None:
    """Publish ``messages`` as one record batch in which the header name of message
    ``unparseable`` is not UTF-8: what a librdkafka or Go producer can send, and aiokafka
    cannot parse (its producer only takes text header names, so the batch is patched)."""
    import struct

    from aiokafka.record.util import calc_crc32c

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        for i, (key, value, headers) in enumerate(messages):
            marked = [*headers, ("\x01\x02", b"x")] if i == unparseable else headers
            batch.append(key=key, value=value, headers=marked, timestamp=None)
        built = bytearray(batch._build())
        at = built.index(b"\x01\x02")
        built[at : at + 2] = b"\xff\xfe"
        # The CRC-32C covers the batch from its attributes (byte 21) on, and sits at 17.
        struct.pack_into(">I", built, 17, calc_crc32c(bytes(built[21:])))
        batch._buffer = built
        await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
