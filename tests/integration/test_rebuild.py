"""`rebuild` on the real PostgreSQL: the log folded again gives the live path's state."""

from __future__ import annotations

import gc
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from user_events_schemas import build_event, structured_record

from consumer.core.batchplan import BatchPlan, plan_batch
from consumer.core.decode import decode
from consumer.core.records import KafkaRecord
from consumer.pipeline.batches import split_batch
from consumer.tools.clients import open_tool_store
from consumer.tools.rebuild import rebuild
from tests.integration.support import fetch, new_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(rng: random.Random, users: int) -> list[dict[str, Any]]:
    events = []
    for i in range(users):
        user, seq = f"r{i}", 1
        events.append(
            build_event(
                "user.created",
                user,
                {"email": f"{user}@example.com", "name": "A"},
                source="/tests",
                sequence=seq,
                time=T0 + timedelta(seconds=seq),
            )
        )
        for _ in range(rng.randint(0, 4)):
            seq += 1
            data = rng.choice([{"name": f"N{seq}"}, {"email": f"{user}.{seq}@example.com"}])
            events.append(
                build_event(
                    "user.updated",
                    user,
                    data,
                    source="/tests",
                    sequence=seq,
                    time=T0 + timedelta(seconds=seq),
                )
            )
        if rng.random() < 0.3:
            seq += 1
            events.append(
                build_event(
                    "user.deleted",
                    user,
                    None,
                    source="/tests",
                    sequence=seq,
                    time=T0 + timedelta(seconds=seq),
                )
            )
    # Another user claiming an email already held: a conflict, which is never logged.
    events.append(
        build_event(
            "user.created",
            "r-dup",
            {"email": "r0@example.com", "name": "D"},
            source="/tests",
            sequence=1,
            time=T0,
        )
    )
    return events


async def test_rebuild_gives_the_live_state_on_a_shuffled_duplicated_history(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    rng = random.Random(4)
    events = history(rng, 25)
    sent = events + rng.sample(events, len(events) // 2)  # duplicates
    rng.shuffle(sent)
    records = [
        KafkaRecord("t", 0, offset, 0, *structured_record(e)[:2], ())
        for offset, e in enumerate(sent)
    ]
    assert all(not hasattr(decode(r, 10**6), "reason") for r in records)
    store = await open_tool_store(settings)
    try:
        # The live write path, in batches of random sizes.
        at = 0
        while at < len(records):
            size = rng.randint(1, 12)
            accepted, _, _ = split_batch(records[at : at + size], 10**6)
            async with store.batch() as writer:
                await writer.apply(accepted)
            at += size
        live = await _users(database)
        assert any(row["status"] == "deleted" for row in live.values())

        # Damage the projection; a dry run sees it and writes nothing. (A row deleted by
        # hand would take its key, and so its user's personal values, with it for good.)
        await fetch(database, "UPDATE users SET name = 'wrong' WHERE user_id = 'r1'")
        await fetch(database, "UPDATE users SET email = 'x@example.com' WHERE user_id = 'r2'")
        await fetch(
            database,
            "INSERT INTO users SELECT 'stray', email, name, status, created_at, updated_at, "
            "versions FROM users WHERE user_id = 'r1'",
        )
        dry = await rebuild(store, dry_run=True)
        assert (dry.diff["changed"], dry.diff["added"], dry.diff["removed"]) == (
            ["r1", "r2"],
            [],
            ["stray"],
        )
        assert (await _users(database))["r1"]["name"] == "wrong"

        collecting_while_folding = []

        def watched(*args: Any) -> BatchPlan:
            collecting_while_folding.append(gc.isenabled())
            return plan_batch(*args)

        report = await rebuild(store, rule=watched)
        # The fold ran with the collector paused, and gave it back.
        assert collecting_while_folding and not any(collecting_while_folding)
        assert gc.isenabled()
        logged = await fetch(database, "SELECT count(*) AS n FROM user_events")
        assert report.events == logged[0]["n"]
        assert await _users(database) == live
        again = await rebuild(store)
        assert again.diff == {"added": [], "removed": [], "changed": []}
    finally:
        await store.close()
    assert await _users(database) == live


async def _users(database: str) -> dict[str, dict[str, Any]]:
    rows = await fetch(database, "SELECT * FROM users")
    return {row["user_id"]: dict(row) for row in rows}
