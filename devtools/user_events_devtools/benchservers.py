"""Where a bench phase runs: the servers, a fresh database, its own topics, the data set.

The broker and PostgreSQL named by KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, else embedded
ones started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer

from consumer.edges.kafka import client_options, ensure_topics
from consumer.edges.migrate import apply_migrations
from consumer.settings import Settings
from user_events_devtools.benchdata import bench_messages
from user_events_devtools.devenv import EmbeddedBroker, EmbeddedPostgres

PARTITIONS = 6


class Servers(NamedTuple):
    """Where the bench runs; ``broker_pid`` is the embedded broker's (None for a configured
    one), so that its CPU can be measured."""

    bootstrap: str
    server_url: str
    broker_pid: int | None


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """The configured broker and PostgreSQL server, else embedded ones."""
    broker = postgres = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    server_url = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="ue-bench-") as tmp:
        try:
            if not bootstrap:
                broker = EmbeddedBroker().start()
                bootstrap = broker.bootstrap_servers
            if not server_url:
                postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
                server_url = postgres.url
            broker_pid = broker.process.pid if broker and broker.process else None
            yield Servers(bootstrap, server_url, broker_pid)
        finally:
            if broker:
                broker.stop()
            if postgres:
                postgres.stop(mode="immediate")


def phase_settings(bootstrap: str, name: str) -> Settings:
    """Settings for one phase: its own topic, dead-letter topic and group."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=name,
        kafka_dlq_topic=f"{name}.dlq",
        kafka_group_id=name,
    )


async def new_database(server_url: str, name: str) -> str:
    """A new, migrated database ``name`` on the server (dropped first if it exists)."""
    await drop_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_url.rpartition("/")[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


@asynccontextmanager
async def scratch_databases(server_url: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """``new_database`` for the block; every database it made is dropped after, so that
    runs of the bench (and its tests) leave nothing on a shared server."""
    made: list[str] = []

    async def make(name: str) -> str:
        url = await new_database(server_url, name)
        made.append(name)
        return url

    try:
        yield make
    finally:
        for name in made:
            await drop_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop the database ``name`` on the server, if it is there, whoever is connected."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def preload(
    settings: Settings, total: int, users: int, traceparents: bool = False, early: float = 0.0
) -> dict[int, int]:
    """Publish the data set; returns the high watermark of each partition."""
    await ensure_topics(settings, {settings.kafka_topic: PARTITIONS, settings.kafka_dlq_topic: 1})
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks=1,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    ends: dict[int, int] = {}
    try:
        pending = []
        for key, value, headers in bench_messages(
            total, users, traceparents=traceparents, early=early
        ):
            pending.append(
                await producer.send(settings.kafka_topic, value, key=key, headers=headers)
            )
            if len(pending) >= 5000:
                note_ends(ends, await asyncio.gather(*pending))
                pending = []
        note_ends(ends, await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return ends


def note_ends(ends: dict[int, int], metadata: Sequence[Any]) -> None:
    """Raise ``ends`` (partition -> high watermark) to cover the records just sent."""
    for meta in metadata:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
