"""Batches of different partitions are written side by side (``DB_CONCURRENT_BATCHES``):
a partition whose write is held up in PostgreSQL does not hold up the others, and the
end state is exact."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from user_events_schemas import build_event, structured_record

from consumer.edges.migrate import apply_migrations
from tests.integration.support import (
    eventually,
    logged_offsets,
    new_settings,
    publish,
    running_service,
    stored_offsets,
    users_by_id,
)
from tests.integration.support import fetch as query

PER_PARTITION = 40


def creations(partition: int) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    return [
        structured_record(
            build_event(
                "user.created",
                f"p{partition}u{i}",
                {"email": f"p{partition}u{i}@x.io", "name": "A"},
                source="/tests",
            )
        )
        for i in range(PER_PARTITION)
    ]


async def _waiting_on_a_lock(conn: asyncpg.Connection) -> bool:
    waiting = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


def _write_retries() -> float:
    sample = REGISTRY.get_sample_value("user_events_retries_total", {"operation": "write_batch"})
    return sample or 0.0


@pytest.mark.parametrize(
    "held_up",
    [
        pytest.param({}, id="waiting"),
        # Past the command timeout, the write fails and is retried: only its own
        # partitions are paused meanwhile.
        pytest.param({"db_command_timeout_seconds": 1.0}, id="retrying"),
    ],
)
async def test_a_held_up_partition_does_not_hold_up_the_others(
    bootstrap_servers: str, database: str, held_up: dict[str, Any]
) -> None:
    settings = await new_settings(bootstrap_servers, database, db_concurrent_batches=2, **held_up)
    topic, group = settings.kafka_topic, settings.kafka_group_id
    blocker = await asyncpg.connect(database)
    try:
        await apply_migrations(blocker)
        # The partitions' offsets rows, as positioning claims them, and a lock on
        # partition 0's: its batch does all its work, then waits to move its offsets.
        await blocker.execute(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)"
            " SELECT $1, $2, p, 0 FROM generate_series(0, 2) AS p",
            group,
            topic,
        )
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            "SELECT 1 FROM consumer_offsets WHERE group_id = $1 AND partition = 0 FOR UPDATE",
            group,
        )
        async with running_service(settings):
            await publish(bootstrap_servers, topic, creations(0), partition=0)
            watcher = await asyncpg.connect(database)
            retries = _write_retries()
            try:
                await eventually(lambda: _waiting_on_a_lock(watcher))
                if held_up:

                    async def retried() -> bool:
                        return _write_retries() > retries

                    await eventually(retried)
            finally:
                await watcher.close()
            for partition in (1, 2):
                await publish(bootstrap_servers, topic, creations(partition), partition=partition)

            async def others_written() -> bool:
                logged = await logged_offsets(database)
                return all(len(logged.get(p, [])) == PER_PARTITION for p in (1, 2))

            await eventually(others_written)
            assert 0 not in await logged_offsets(database)  # still held up
            await holding.rollback()  # partition 0's batch goes on

            async def all_written() -> bool:
                return await stored_offsets(database, group) == dict.fromkeys(
                    range(3), PER_PARTITION
                )

            await eventually(all_written)
    finally:
        await blocker.close()
    logged = await logged_offsets(database)
    assert logged == {p: list(range(PER_PARTITION)) for p in range(3)}
    users = users_by_id(await query(database, "SELECT * FROM users"))
    assert sorted(users) == sorted(f"p{p}u{i}" for p in range(3) for i in range(PER_PARTITION))
    assert {user["status"] for user in users.values()} == {"active"}
