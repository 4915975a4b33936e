"""The event log by day: a migration that keeps every row, prunes that drop whole days
(by the tool and on LOG_RETENTION's schedule), and what stays true after them: no second
row for a redelivery within retention, no change to users after it, no silent rebuild.
Real broker, real PostgreSQL, the real ``run`` process and the real tools."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import Store
from consumer.settings import Settings
from tests.integration.privacy import SOURCE, Person, created, deleted, updated, where_found
from tests.integration.support import (
    eventually,
    fetch,
    logged_is,
    new_settings,
    publish,
    service_env,
    start_service_process,
)
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration

_COLUMNS = (
    "source, event_id, user_id, type, time, sequence, kafka_topic, kafka_partition, "
    "kafka_offset, payload, outcome, recorded_at"
)


def message(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (event["subject"].encode(), orjson.dumps(event), [])


def today() -> date:
    return datetime.now(UTC).date()


def log_row(event: dict[str, Any], offset: int, recorded_at: datetime) -> tuple[Any, ...]:
    """A row as the service wrote it on the day of ``recorded_at`` (at offset ``offset``)."""
    return (
        event["source"],
        event["id"],
        event["subject"],
        event["type"],
        datetime.fromisoformat(event["time"]),
        event.get("sequence"),
        "old-topic",
        0,
        offset,
        json.dumps(event),
        "applied",
        recorded_at,
    )


async def insert_old_rows(database: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows recorded on earlier days, as the log holds them after running then."""
    conn = await asyncpg.connect(database)
    try:
        for day in {row[-1].astimezone(UTC).date() for row in rows}:
            await conn.execute("SELECT user_events_add_partition($1)", day)
        await conn.executemany(
            f"INSERT INTO user_events ({_COLUMNS}, recorded_on) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13)",
            [(*row, row[-1].astimezone(UTC).date()) for row in rows],
        )
    finally:
        await conn.close()


async def days_of_log(database: str) -> list[str]:
    rows = await fetch(
        database,
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'user_events'::regclass ORDER BY 1",
    )
    return [row["relname"] for row in rows]


async def test_migrating_a_0003_database_keeps_every_row_and_erases_the_deleted(
    database: str,
) -> None:
    gone, here = Person.new("gone"), Person.new("here")
    renamed = gone.renamed()
    history = [created(gone, 1), updated(renamed, 2), deleted(gone, 3), created(here, 1)]
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn, through=3)
        # The log and users as 0003 kept them, over three days.
        for i, event in enumerate(history):
            recorded = datetime.now(UTC) - timedelta(days=3 - i)
            await conn.execute(
                f"INSERT INTO user_events ({_COLUMNS}) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)",
                *log_row(event, i, recorded),
            )
        versions = json.dumps(
            {
                r: [3, history[2]["time"], SOURCE, history[2]["id"]]
                for r in ("status", "email", "name")
            }
        )
        await conn.execute(
            "INSERT INTO users VALUES ($1, NULL, NULL, 'deleted', now(), now(), $2::jsonb), "
            "($3, $4, $5, 'active', now(), now(), $6::jsonb)",
            gone.user_id,
            versions,
            here.user_id,
            here.email,
            here.name,
            json.dumps(
                {
                    r: [1, history[3]["time"], SOURCE, history[3]["id"]]
                    for r in ("status", "email", "name")
                }
            ),
        )
        before = await conn.fetch(
            "SELECT source, event_id, user_id, type, time, sequence, kafka_offset, outcome, "
            "recorded_at FROM user_events ORDER BY kafka_offset"
        )

        await apply_migrations(conn)

        after = await conn.fetch(
            "SELECT source, event_id, user_id, type, time, sequence, kafka_offset, outcome, "
            "recorded_at FROM user_events ORDER BY kafka_offset"
        )
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert len(after) == 4
        days = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'user_events'::regclass"
        )
        assert days >= 4 + 2  # the rows' days (today among them), and the days ahead
        [erasure] = await conn.fetch("SELECT * FROM erasures")
        assert (erasure["user_id"], erasure["event_id"], erasure["trigger"]) == (
            gone.user_id,
            history[2]["id"],
            "event",
        )
        # The append-only rule holds on the new table.
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE user_events SET outcome = 'stale'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM user_events")
    finally:
        await conn.close()
    assert await where_found(database, gone.canaries + renamed.canaries) == []
    # The active user keeps its plain row from before keys, and gets a key for what comes.
    assert "user_events.payload" in await where_found(database, here.canaries)
    [key] = await fetch(database, "SELECT data_key FROM users WHERE user_id = $1", here.user_id)
    assert len(key["data_key"]) == 32

    # Its delete now: the plain row is erased in place, the key goes.
    store = await Store.open(Settings(database_url=database))
    try:
        record = KafkaRecord("t", 0, 9, 0, None, orjson.dumps(deleted(here, 2)), ())
        decoded = decode(record, 10**6)
        assert not isinstance(decoded, Rejection)
        async with store.batch() as writer:
            plan = await writer.apply([(record, decoded)])
        assert [v.result for v in plan.verdicts] == [Outcome.APPLIED]
    finally:
        await store.close()
    assert await where_found(database, here.canaries) == []
    [key] = await fetch(database, "SELECT data_key FROM users WHERE user_id = $1", here.user_id)
    assert key["data_key"] is None


async def test_the_service_drops_days_past_log_retention_and_keeps_the_rest(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = service_env(settings)
    migrated = await run_cli(["migrate"], env)
    assert migrated.code == 0, migrated.stderr
    old = Person.new("old")
    now = datetime.now(UTC)
    await insert_old_rows(
        database,
        [
            log_row(created(old, 1), 0, now - timedelta(days=5)),
            log_row(updated(old.renamed(), 2), 1, now - timedelta(days=4)),
        ],
    )
    new = Person.new("new")
    await publish(bootstrap_servers, settings.kafka_topic, [message(created(new, 1))])
    service = start_service_process(
        settings, LOG_RETENTION="2d", LOG_MAINTENANCE_INTERVAL_SECONDS="0.2"
    )
    try:
        await eventually(lambda: logged_is(database, 1))
        day = f"user_events_{today():%Y%m%d}"
        assert day in await days_of_log(database)
        [pruned] = await fetch(database, "SELECT * FROM log_prunes")
        assert pruned["pruned_by"] == "schedule" and pruned["rows"] == 2
        assert sorted(pruned["days"]) == [(now - timedelta(days=d)).date() for d in (5, 4)]
    finally:
        service.terminate()
        assert service.wait(30) == 0
    # Once rows were pruned, the log no longer holds history: rebuild refuses.
    refused = await run_cli(["rebuild"], env)
    assert refused.code == 2 and "the event log was pruned" in refused.error_line
    assert "users table is unchanged" in refused.error_line


async def test_prune_drops_whole_days_before_the_horizon_and_reports_them(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = service_env(settings)
    assert (await run_cli(["migrate"], env)).code == 0
    who = Person.new("pruned")
    now = datetime.now(UTC)
    await insert_old_rows(
        database,
        [
            log_row(created(who, 1), 0, now - timedelta(days=10)),
            log_row(updated(who.renamed(), 2), 1, now - timedelta(days=3)),
            log_row(updated(who, 3), 2, now - timedelta(days=2)),
        ],
    )
    dry = await run_cli(["prune", "--older-than", "2d", "--dry-run", "--json"], env)
    assert dry.code == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["days"] == [str((now - timedelta(days=d)).date()) for d in (10, 3)]
    assert (report["rows"], report["pruned"]) == (2, False)
    assert (await fetch(database, "SELECT count(*) AS n FROM user_events"))[0]["n"] == 3

    done = await run_cli(["prune", "--older-than", "2d"], env)
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("dropped 2 days of the event log")
    left = await fetch(database, "SELECT sequence FROM user_events")
    assert [row["sequence"] for row in left] == [3]  # its day is not wholly past the horizon
    again = await run_cli(["prune", "--older-than", "2d"], env)
    assert again.code == 0 and again.stdout.startswith("nothing to prune")

    for bad, says in (
        (["prune", "--before", "2999-01-01T00:00:00Z"], "is in the future"),
        (["prune", "--older-than", "2 days"], "--older-than '2 days' is not a duration"),
        (["prune", "--before", "yesterday"], "--before 'yesterday' is not an RFC 3339 time"),
    ):
        refused = await run_cli(bad, env)
        assert refused.code == 2 and says in refused.error_line, refused.stderr


async def test_a_redelivery_is_a_duplicate_across_days_and_stale_once_its_day_is_pruned(
    bootstrap_servers: str, database: str
) -> None:
    """Exactly once within retention, across the days of the log; and after pruning, a
    redelivery changes nothing in users."""
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = service_env(settings)
    who = Person.new("redelivered")
    first = [created(who, 1), updated(who.renamed(), 2)]
    await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in first])
    service = start_service_process(settings)
    try:
        await eventually(lambda: logged_is(database, 2))
    finally:
        service.terminate()
        assert service.wait(30) == 0
    users_before = await fetch(database, "SELECT * FROM users")

    # Move those rows to three days ago, as if they had been recorded then (the rows are
    # copied; the trigger forbids moving them, so the test drops today's day and rewrites).
    rows = await fetch(database, f"SELECT {_COLUMNS} FROM user_events ORDER BY sequence")
    await fetch(database, f'DROP TABLE "user_events_{today():%Y%m%d}"')
    await fetch(database, "SELECT user_events_add_partition($1)", today())
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    await insert_old_rows(database, [(*tuple(row)[:-1], three_days_ago) for row in rows])

    # Redelivered within retention: duplicates, no second row.
    replayed = await run_cli(["replay", "--from", "earliest", "--json"], env)
    assert replayed.code == 0, replayed.stderr
    total = json.loads(replayed.stdout)["total"]
    assert (total["duplicate"], total["applied"], total["stale"]) == (2, 0, 0), total
    assert (await fetch(database, "SELECT count(*) AS n FROM user_events"))[0]["n"] == 2

    # Pruned, then redelivered: stale, logged again once, and users as it was.
    pruned = await run_cli(["prune", "--older-than", "1d"], env)
    assert pruned.code == 0 and "dropped 1 days" in pruned.stdout, pruned.stdout
    replayed = await run_cli(["replay", "--from", "earliest", "--json"], env)
    total = json.loads(replayed.stdout)["total"]
    assert (total["duplicate"], total["applied"], total["stale"]) == (0, 0, 2), total
    assert await fetch(database, "SELECT * FROM users") == users_before
    replayed = await run_cli(["replay", "--from", "earliest", "--json"], env)
    assert json.loads(replayed.stdout)["total"]["duplicate"] == 2
