"""Outages of PostgreSQL and of the broker, on servers these tests own and stop: the
consumer waits them out without exiting, spinning or dead-lettering, and resumes on its
own with nothing lost or applied twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from user_events_devtools.devenv import EmbeddedBroker, EmbeddedPostgres, free_port
from user_events_schemas import build_event, structured_record

from consumer.edges import metrics
from consumer.edges.kafka import ensure_topics
from consumer.edges.migrate import apply_migrations
from tests.integration.support import (
    assert_history_applied_exactly_once,
    count_logged,
    cpu_seconds,
    eventually,
    fetch,
    get,
    logged_is,
    new_settings,
    publish,
    read_all,
    running_service,
    sample,
    scrape,
    start_service_process,
    user_history,
)

pytestmark = pytest.mark.integration

DATABASE_OUTAGE_SECONDS = 30  # each database outage lasts at least this long
OUTAGE_SECONDS = 5  # the broker's


async def outage_is_visible(port: int) -> bool:
    """db_up 0, paused partitions, /readyz 503 naming PostgreSQL, and still alive."""
    samples = await scrape(port)
    status, body = await get(port, "/readyz")
    return (
        sample(samples, "user_events_db_up") == 0
        and (sample(samples, "user_events_partitions_paused") or 0) > 0
        and status == 503
        and json.loads(body)["reason"] == "postgresql is not answering"
        and (await get(port, "/healthz"))[0] == 200
    )


async def recovered(port: int) -> bool:
    if (await get(port, "/healthz"))[0] != 200:
        return False  # not serving yet
    samples = await scrape(port)
    return (
        sample(samples, "user_events_db_up") == 1
        and sample(samples, "user_events_partitions_paused") == 0
        and (await get(port, "/readyz"))[0] == 200
    )


@asynccontextmanager
async def postgres_outage(server: EmbeddedPostgres, how: str) -> AsyncIterator[None]:
    """PostgreSQL away for the block: stopped (every connection goes with it), or
    refusing new connections with the open ones terminated."""
    if how == "stopped":
        await asyncio.to_thread(server.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(server.start)
        return
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute("ALTER DATABASE events ALLOW_CONNECTIONS false")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'events'"
        )
        yield
    finally:
        await admin.execute("ALTER DATABASE events ALLOW_CONNECTIONS true")
        await admin.close()


# Each outage a test of its own, so that the two run side by side (about 35 s each).
@pytest.mark.parametrize("how", ["stopped", "refusing"])
async def test_postgres_stopped_or_refusing_connections_pauses_then_resumes_exactly(
    bootstrap_servers: str, tmp_path: Path, how: str
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        admin = await asyncpg.connect(server.url)
        await admin.execute("CREATE DATABASE events")
        await admin.close()
        database = server.url.rsplit("/", 1)[0] + "/events"
        port = free_port()
        settings = await new_settings(
            bootstrap_servers,
            database,
            partitions=3,
            db_connect_timeout_seconds=1.0,
            db_pool_acquire_timeout_seconds=2.0,
        )
        settings = settings.model_copy(update={"http_port": port})
        history = [structured_record(e) for e in user_history(users=30, updates=5)]
        before, during = history[:60], history[60:]
        rebalances = metrics.REBALANCES._value.get()
        retries = metrics.RETRIES.labels("write_batch")._value.get()
        async with running_service(settings):
            await eventually(lambda: recovered(port), timeout=30)
            await publish(bootstrap_servers, settings.kafka_topic, before)
            await eventually(lambda: logged_is(database, len(before)))

            async with postgres_outage(server, how):
                await publish(bootstrap_servers, settings.kafka_topic, during)
                await eventually(lambda: outage_is_visible(port), timeout=20)
                await asyncio.sleep(DATABASE_OUTAGE_SECONDS)
                assert await outage_is_visible(port)
            await eventually(lambda: logged_is(database, len(history)), timeout=30)
            await eventually(lambda: recovered(port), timeout=10)

        # Membership was kept throughout, the writes were retried, nothing dead-lettered.
        assert metrics.REBALANCES._value.get() == rebalances + 1
        assert metrics.RETRIES.labels("write_batch")._value.get() > retries
        await assert_history_applied_exactly_once(database, users=30, updates=5)
        assert await read_all(bootstrap_servers, settings.kafka_dlq_topic) == []
    finally:
        server.stop(mode="immediate")


def fresh_events(prefix: str, count: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [
        structured_record(
            build_event(
                "user.created",
                f"{prefix}-{i}",
                {"email": f"{prefix}-{i}@example.com", "name": f"{prefix} {i}"},
                source="/tests",
                sequence=1,
            )
        )
        for i in range(count)
    ]


async def _status_is(port: int, path: str, status: int) -> bool:
    return (await get(port, path))[0] == status


async def _kafka_reported_down(port: int) -> bool:
    status, body = await get(port, "/readyz")
    samples = await scrape(port)
    return (
        sample(samples, "user_events_kafka_up") == 0
        and status == 503
        and "kafka" in json.loads(body)["reason"]
    )


async def test_an_unreachable_broker_neither_stops_nor_spins_the_consumer(
    database: str, tmp_path: Path
) -> None:
    broker = EmbeddedBroker().start()
    log_path = tmp_path / "stderr.log"
    try:
        settings = await new_settings(broker.bootstrap_servers, database, partitions=1)
        port = free_port()
        with log_path.open("wb") as stderr:
            process = start_service_process(settings, stderr, HTTP_PORT=str(port))
        try:
            before = fresh_events("a", 60)
            await publish(broker.bootstrap_servers, settings.kafka_topic, before)
            await eventually(lambda: logged_is(database, 60), timeout=30)

            await asyncio.to_thread(broker.stop)
            cpu_before, started = cpu_seconds(process.pid), time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)
            # Operators see it: kafka_up 0 and /readyz 503 naming Kafka.
            await eventually(lambda: _kafka_reported_down(port), timeout=20)
            assert process.poll() is None, log_path.read_text()[-2000:]
            busy = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - started)
            assert busy < 0.5, busy  # a loop spinning on a dead broker burns a whole core
            assert (await get(port, "/healthz"))[0] == 200

            # The broker comes back on the same address. This one keeps nothing in memory, so
            # its log is put back as a real broker would have kept it (the offsets stored
            # in PostgreSQL point into it), then fresh events follow.
            broker = EmbeddedBroker(port=broker.port).start()
            await ensure_topics(settings, {settings.kafka_topic: 1, settings.kafka_dlq_topic: 1})
            await publish(broker.bootstrap_servers, settings.kafka_topic, before)
            await publish(broker.bootstrap_servers, settings.kafka_topic, fresh_events("b", 20))
            await eventually(lambda: logged_is(database, 80), timeout=40)
            await eventually(lambda: _status_is(port, "/readyz", 200), timeout=15)
        finally:
            process.terminate()
            returncode = await asyncio.to_thread(process.wait, 30)
        assert returncode == 0, log_path.read_text()[-2000:]
        rows = await fetch(database, "SELECT count(*) AS n FROM users WHERE user_id LIKE 'b-%'")
        assert rows[0]["n"] == 20
    finally:
        broker.stop()


async def test_offsets_unreadable_at_assignment_cost_neither_liveness_nor_membership(
    bootstrap_servers: str, database: str
) -> None:
    """The stored offsets cannot be read (a migration holds a lock on their table) when
    the group assigns partitions, for longer than both the session timeout and the
    liveness limit. The rebalance listener must not wait on that read (aiokafka sends no
    heartbeat until it returns), and the loop retrying it is not wedged: /healthz stays
    200, the group is not rebalanced again, and once the lock goes nothing of what was
    published meanwhile is lost or applied twice."""
    wedged_seconds = 2.0
    port = free_port()
    settings = await new_settings(
        bootstrap_servers,
        database,
        partitions=3,
        http_port=port,
        kafka_session_timeout_ms=3000,
        health_wedged_after_seconds=wedged_seconds,
        db_command_timeout_seconds=0.5,
        retry_max_seconds=0.5,
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        history = [structured_record(e) for e in user_history(users=10, updates=2)]
        await publish(bootstrap_servers, settings.kafka_topic, history)
        rebalances = metrics.REBALANCES._value.get()
        retries = metrics.RETRIES.labels("load_offsets")._value.get()
        lock = conn.transaction()
        await lock.start()
        await conn.execute("LOCK TABLE consumer_offsets IN ACCESS EXCLUSIVE MODE")
        async with running_service(settings):
            await eventually(lambda: _assigned_since(rebalances), timeout=20)
            liveness = []
            until = time.monotonic() + 3 * wedged_seconds
            while time.monotonic() < until:
                liveness.append((await get(port, "/healthz"))[0])
                await asyncio.sleep(0.2)
            assert await count_logged(database) == 0  # nothing moved while locked
            await lock.rollback()
            await eventually(lambda: logged_is(database, len(history)), timeout=30)
            await asyncio.sleep(2)  # time for an eviction and a rejoin to show
            assert metrics.REBALANCES._value.get() == rebalances + 1
        assert set(liveness) == {200}
        assert metrics.RETRIES.labels("load_offsets")._value.get() > retries
        await assert_history_applied_exactly_once(database, users=10, updates=2)
    finally:
        await conn.close()


async def _assigned_since(rebalances: float) -> bool:
    return bool(metrics.REBALANCES._value.get() > rebalances)
