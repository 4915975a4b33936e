"""`user-events-consumer dev`: the whole pipeline on embedded servers, with demo traffic."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import asyncpg

from consumer.app import run_service, stop_on_signals
from consumer.devtools.demo import demo_messages
from consumer.devtools.devenv import EmbeddedBroker, EmbeddedPostgres, free_port
from consumer.edges import metrics
from consumer.edges.kafka import ensure_topics, start_producer
from consumer.settings import Settings


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


async def _publish(settings: Settings, rate: float, stopping: asyncio.Event) -> None:
    producer = await start_producer(settings)
    try:
        for key, value, headers in demo_messages(random.Random(7)):
            if stopping.is_set():
                return
            await producer.send(settings.kafka_topic, value=value, key=key, headers=headers)
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


async def _report(settings: Settings, stopping: asyncio.Event) -> None:
    dsn = settings.database_url.get_secret_value()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 5)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(dsn)
            try:
                users = await conn.fetchval("SELECT count(*) FROM users WHERE status = 'active'")
                events = await conn.fetchval("SELECT count(*) FROM user_events")
            finally:
                await conn.close()
            dead = sum(
                s.value
                for m in metrics.DEAD_LETTERS.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )
            print(
                f"[dev] active users={users} logged events={events} dead letters={int(dead)}",
                flush=True,
            )


async def _forget_offsets(settings: Settings) -> int:
    """The embedded broker keeps nothing, but PostgreSQL in the data directory does: its
    stored offsets belong to the topic of an earlier run, and would lie past the end of
    the new one. Forget the dev group's; returns how many there were."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        if await conn.fetchval("SELECT to_regclass('consumer_offsets')") is None:
            return 0
        status = await conn.execute(
            "DELETE FROM consumer_offsets WHERE group_id = $1", settings.kafka_group_id
        )
        return int(status.split()[-1])
    finally:
        await conn.close()


async def run_dev(data_dir: Path, rate: float) -> int:
    """Start embedded PostgreSQL and broker, the consumer and a demo publisher; Ctrl-C stops."""
    postgres = EmbeddedPostgres(data_dir / "postgres", port=_port_or_free(55432))
    broker = EmbeddedBroker(port=_port_or_free(19092), log_path=data_dir / "broker.log")
    postgres.start()
    broker.start()
    try:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            database_url=postgres.url,
            http_port=_port_or_free(8080),
            http_host="127.0.0.1",
            # The embedded broker has no InitProducerId: asking would log an error and a
            # warning at each start, for every producer.
            kafka_enable_idempotence="false",
        )
        await ensure_topics(settings, {settings.kafka_topic: 6, settings.kafka_dlq_topic: 1})
        if reset := await _forget_offsets(settings):
            print(
                f"[dev] a fresh broker (it keeps nothing): the offsets stored for "
                f"{reset} partitions in {data_dir} are reset, so the new topic is read",
                flush=True,
            )
        print(
            f"[dev] PostgreSQL: {postgres.url}\n"
            f"[dev] Kafka:      {broker.bootstrap_servers} (topics {settings.kafka_topic}, "
            f"{settings.kafka_dlq_topic})\n"
            f"[dev] Metrics:    http://127.0.0.1:{settings.http_port}/metrics "
            f"(also /healthz, /readyz)\n"
            f"[dev] Try:        psql {postgres.url} -c 'SELECT * FROM users LIMIT 5'\n"
            "[dev] Ctrl-C stops everything.",
            flush=True,
        )
        stopping = asyncio.Event()
        stop_on_signals(stopping)
        service = asyncio.create_task(run_service(settings, stopping=stopping))
        helpers = [
            asyncio.create_task(_publish(settings, rate, stopping)),
            asyncio.create_task(_report(settings, stopping)),
        ]
        code = await service
        stopping.set()
        await asyncio.gather(*helpers, return_exceptions=True)
        return code
    finally:
        broker.stop()
        postgres.stop()
        print("[dev] stopped.", flush=True)
