"""Crashes and lost connections: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
from user_events_schemas import structured_record

from consumer.edges import metrics
from tests.integration.support import (
    assert_history_applied_exactly_once,
    count_logged,
    eventually,
    fetch,
    kafka_committed_offsets,
    logged_at_least,
    logged_is,
    new_settings,
    publish,
    read_topic,
    running_service,
    service_env,
    user_history,
)


async def test_sigkill_between_the_database_commit_and_the_kafka_commit_loses_and_repeats_nothing(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    history = user_history(users=40, updates=4)
    messages = [structured_record(e) for e in history]
    await publish(
        bootstrap_servers, settings.kafka_topic, messages + messages[:30]
    )  # with redeliveries

    command = [sys.executable, "-m", "consumer.cli", "run"]
    crashed = await asyncio.to_thread(
        subprocess.run,
        command,
        timeout=120,
        capture_output=True,
        env=service_env(settings, KAFKA_MAX_POLL_RECORDS="25", FAILPOINT_KILL_AFTER_DB_COMMIT="3"),
    )
    assert crashed.returncode == -9, crashed.stderr.decode()[-2000:]
    # The crash left the database ahead of Kafka: the window this test is about.
    stored = {
        r["partition"]: r["next_offset"]
        for r in await fetch(database, "SELECT partition, next_offset FROM consumer_offsets")
    }
    committed = await kafka_committed_offsets(
        bootstrap_servers, settings.kafka_group_id, settings.kafka_topic, 3
    )
    assert any(committed.get(p) != offset for p, offset in stored.items())
    logged_before_restart = await count_logged(database)
    assert 0 < logged_before_restart < len(history)

    process = subprocess.Popen(command, env=service_env(settings), stderr=subprocess.PIPE)
    try:
        await eventually(lambda: logged_is(database, len(history)), timeout=60)
        await asyncio.sleep(1)  # give a wrongly repeated batch the time to show up
    finally:
        process.terminate()
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    await assert_history_applied_exactly_once(database, users=40, updates=4)
    assert await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 1, timeout=1) == []


# Enough events that the kills land while batches are being written (batches of 20).
USERS_KILLED = 120


async def test_postgres_connections_killed_mid_run_lose_nothing(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(
        bootstrap_servers, database, partitions=3, kafka_max_poll_records=20
    )
    history = user_history(users=USERS_KILLED, updates=9)
    await publish(bootstrap_servers, settings.kafka_topic, [structured_record(e) for e in history])
    retries = metrics.RETRIES.labels("write_batch")._value
    retries_before = retries.get()
    admin = await asyncpg.connect(database)
    try:
        async with running_service(settings):
            await eventually(lambda: logged_at_least(database, 1))
            killed = 0
            # Until a kill has landed in a batch's transaction (one on an idle pooled
            # connection is only reconnected): how soon depends on the machine's load.
            for _ in range(30):
                killed += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(0.3)
                if killed >= 3 and retries.get() > retries_before:
                    break
            assert killed >= 3
            await eventually(lambda: logged_is(database, len(history)), timeout=60)
    finally:
        await admin.close()
    await assert_history_applied_exactly_once(database, users=USERS_KILLED, updates=9)
    assert metrics.RETRIES.labels("write_batch")._value.get() > retries_before
    assert await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 1, timeout=1) == []
