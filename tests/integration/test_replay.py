"""`replay` on the real broker and PostgreSQL: ranges, dry run, time lookup, beside `run`."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime, timedelta

import pytest
from user_events_schemas import build_event, structured_record

from consumer.app import open_store
from consumer.edges.store import Store
from consumer.settings import Settings
from consumer.tools.replay.apply import ReplayRequest, replay
from tests.integration.support import (
    eventually,
    fetch,
    headers_of,
    new_settings,
    publish,
    read_topic,
    running_service,
    users_by_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(kind: str, user: str, seq: int, **data: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    if kind == "user.created":
        data = {"email": f"{user}@example.com", "name": f"Name {user}", **data}
    event = build_event(
        kind, user, data or None, source="/tests", sequence=seq, time=T0 + timedelta(seconds=seq)
    )
    return structured_record(event)


HISTORY = [
    ev("user.created", "u1", 1),
    ev("user.updated", "u1", 2, name="Ada"),
    ev("user.created", "u2", 1),
    (b"x", b"{not json", []),
    ev("user.deleted", "u2", 3),
    ev("user.updated", "ghost", 2, name="Nobody"),
    ev("user.updated", "u1", 4, email="ada@example.com"),
]


async def _store(settings: Settings) -> Store:
    return await open_store(settings, asyncio.Event(), migrate=True)


async def _state(database: str) -> dict[str, tuple[object, ...]]:
    rows = users_by_id(await fetch(database, "SELECT * FROM users"))
    return {u: (r["status"], r["email"], r["name"]) for u, r in rows.items()}


EXPECTED = {
    "u1": ("active", "ada@example.com", "Ada"),
    "u2": ("deleted", None, None),
}


async def test_replay_dry_run_then_real_then_again_is_all_duplicates(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    await publish(bootstrap_servers, settings.kafka_topic, HISTORY, partition=0)
    store = await _store(settings)
    try:
        dry = await replay(settings, store, ReplayRequest("earliest", dry_run=True))
        assert await _state(database) == {}
        t = dry.total()
        # The ghost's update waits for its create (parked); the record that is not JSON
        # is dead-lettered.
        assert (t.read, t.applied, t.duplicate, t.stale, t.parked, t.dead_lettered) == (
            7,
            5,
            0,
            0,
            1,
            1,
        )

        real = await replay(settings, store, ReplayRequest("earliest"))
        assert real.partitions[0].applied == 5 and real.partitions[0].dead_lettered == 1
        assert real.partitions[0].parked == 1
        assert (real.partitions[1].start, real.partitions[1].end, real.partitions[1].read) == (
            0,
            0,
            0,
        )
        assert await _state(database) == EXPECTED

        again = await replay(settings, store, ReplayRequest("earliest", "now"))
        t = again.total()
        # Parked already: not parked twice (one row), and still parked.
        assert (t.read, t.applied, t.duplicate, t.stale, t.parked, t.dead_lettered) == (
            7,
            0,
            5,
            0,
            1,
            1,
        )
        assert len(await fetch(database, "SELECT 1 FROM parked_events")) == 1
        assert await _state(database) == EXPECTED

        pairs = await replay(settings, store, ReplayRequest({0: 5}))
        assert (pairs.partitions[0].start, pairs.partitions[0].read) == (5, 2)
        assert list(pairs.partitions) == [0]
    finally:
        await store.close()
    # The live group's offsets are untouched; the dead letters name the replay's group.
    assert await fetch(database, "SELECT * FROM consumer_offsets") == []
    dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 3, timeout=3)
    assert len(dead) == 2  # one per real replay; the ghost waits, parked
    assert {headers_of(d)["dlq.consumer.group"] for d in dead} == {
        f"{settings.kafka_group_id}-replay".encode()
    }


async def test_replay_by_time_uses_the_broker_answer_and_searches_when_it_has_no_timestamp(
    bootstrap_servers: str, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    await publish(bootstrap_servers, settings.kafka_topic, HISTORY[:3])
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await publish(bootstrap_servers, settings.kafka_topic, HISTORY[4:5] + HISTORY[6:])
    fallback = "searching by fetching records"
    store = await _store(settings)
    try:
        with caplog.at_level(logging.INFO, logger="consumer.tools.replay"):
            # A time inside the partition: this broker answers it with a timestamp.
            later = await replay(settings, store, ReplayRequest(middle, dry_run=True))
            earlier = await replay(settings, store, ReplayRequest("earliest", middle, dry_run=True))
            assert not any(fallback in r.getMessage() for r in caplog.records)
            # A time after every record: this broker answers offset 0 with timestamp -1.
            future = datetime.now(UTC) + timedelta(hours=1)
            to_future = await replay(
                settings, store, ReplayRequest("earliest", future, dry_run=True)
            )
            from_future = await replay(settings, store, ReplayRequest(future, dry_run=True))
    finally:
        await store.close()
    assert (later.partitions[0].start, later.partitions[0].end, later.partitions[0].read) == (
        3,
        5,
        2,
    )
    assert (earlier.partitions[0].start, earlier.partitions[0].end) == (0, 3)
    assert earlier.partitions[0].applied == 3
    assert any(fallback in r.getMessage() for r in caplog.records)
    assert (to_future.partitions[0].end, to_future.partitions[0].read) == (5, 5)
    assert (from_future.partitions[0].start, from_future.partitions[0].read) == (5, 0)


async def test_a_replay_beside_the_live_consumer_leaves_the_single_pass_state(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    thresholds = gc.get_threshold()
    users = [f"v{i}" for i in range(20)]
    history = []
    for i, user in enumerate(users):
        history += [ev("user.created", user, 1), ev("user.updated", user, 2, name=f"N{i}")]
        if i % 3 == 0:
            history.append(ev("user.deleted", user, 3))
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, history[: len(history) // 2])
        store = await _store(settings)
        try:
            replays = [replay(settings, store, ReplayRequest("earliest")) for _ in range(2)]
            publishing = publish(
                bootstrap_servers, settings.kafka_topic, history[len(history) // 2 :]
            )
            await asyncio.gather(*replays, publishing)
            # Two replays overlapped: the collector's thresholds are given back all the same.
            assert gc.get_threshold() == thresholds
            await replay(settings, store, ReplayRequest("earliest"))
        finally:
            await store.close()

        async def caught_up() -> bool:
            rows = await fetch(
                database, "SELECT coalesce(sum(next_offset), 0) AS n FROM consumer_offsets"
            )
            return int(rows[0]["n"]) == len(history)

        await eventually(caught_up)
    expected = {
        user: ("deleted", None, None) if i % 3 == 0 else ("active", f"{user}@example.com", f"N{i}")
        for i, user in enumerate(users)
    }
    assert await _state(database) == expected
    logged = await fetch(database, "SELECT count(*) AS n FROM user_events")
    assert logged[0]["n"] == len(history)
