"""Migration 0007 keeps ``users.versions`` as text instead of jsonb: every row keeps its
versions, and the service goes on deciding against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import orjson
import pytest
from user_events_schemas import build_event

from consumer.core.decode import decode
from consumer.core.projection import Version
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.rows import state_from_row
from consumer.edges.errors import is_transient
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import Store
from consumer.edges.store_users import USERS
from consumer.settings import Settings
from tests.factories import accepted

PLUS_TWO = timezone(timedelta(hours=2))
CREATED = Version(1, datetime(2026, 1, 1, 9, 0, 0, 500, tzinfo=PLUS_TWO), "/signup", "e1")
RENAMED = Version(None, datetime(2026, 1, 2, 7, 0, tzinfo=UTC), "/legacy", "e2")
MOVED = Version(3, datetime(2026, 1, 3, 7, 0, tzinfo=UTC), "/profile", "e3")


def stored(version: Version) -> list[object]:
    """A version as migration 0001's ``versions`` held it."""
    return [version.sequence, version.time.isoformat(), version.source, version.event_id]


async def test_every_version_survives_the_migration_and_still_decides(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn, through=6)
        await conn.execute(
            "INSERT INTO users (user_id, email, name, status, created_at, updated_at, "
            "versions, data_key) VALUES "
            "('kept', 'k@example.com', 'K', 'active', now(), now(), $1::jsonb, $3), "
            "('gone', NULL, NULL, 'deleted', now(), now(), $2::jsonb, NULL)",
            json.dumps(
                {"status": stored(CREATED), "email": stored(MOVED), "name": stored(RENAMED)}
            ),
            json.dumps({r: stored(MOVED) for r in ("status", "email", "name")}),
            b"k" * 32,
        )
        await apply_migrations(conn)
        assert (
            await conn.fetchval(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'users' AND column_name = 'versions'"
            )
            == "text"
        )
        states = {
            r["user_id"]: state_from_row(r) for r in await conn.fetch(USERS, ["kept", "gone"])
        }
    finally:
        await conn.close()
    kept, gone = states["kept"], states["gone"]
    assert (kept.status_version, kept.email_version, kept.name_version) == (
        CREATED,
        MOVED,
        RENAMED,
    )
    assert kept.status_version.time.microsecond == 500  # to the microsecond
    assert gone.status_version == gone.email_version == gone.name_version == MOVED

    # A rename older than the email's version but newer than the name's: the name moves,
    # the rest stays (the registers decide one by one, as before the migration), and the
    # row written reads back as the planner left it.
    store = await Store.open(Settings(database_url=database))
    try:
        event = build_event(
            "user.updated",
            "kept",
            {"name": "Kate"},
            source="/profile",
            sequence=2,
            time=datetime(2026, 1, 2, 8, 0, tzinfo=UTC),
        )
        record = KafkaRecord("t", 0, 0, 0, None, orjson.dumps(event), ())
        decoded = decode(record, 10**6)
        assert not isinstance(decoded, Rejection)
        async with store.batch() as writer:
            plan = await writer.apply([(record, decoded)])
        assert [v.result for v in plan.verdicts] == [Outcome.APPLIED]
        async with store.pool.acquire() as conn:
            row = await conn.fetchrow(USERS, ["kept"])
        after = state_from_row(row)
        assert after.name == "Kate" and after.email == "k@example.com"
        assert after.email_version == MOVED and after.status_version == CREATED
        assert after.name_version == Version.of(decoded)
    finally:
        await store.close()


async def test_a_replica_running_across_the_migration_retries_its_batch(database: str) -> None:
    """A replica still running while another migrates has its users read prepared for a
    jsonb ``versions``: its next batch fails once, as a transient error, and its retry
    goes through."""
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn, through=6)
        store = await Store.open(
            Settings(database_url=database, db_pool_min_size=1, db_pool_max_size=1)
        )
        try:
            create, rename = (
                accepted(
                    build_event(kind, "u1", data, source="/s", sequence=seq, time=CREATED.time),
                    offset=seq,
                )
                for kind, data, seq in (
                    ("user.created", {"email": "u1@example.com", "name": "A"}, 1),
                    ("user.updated", {"name": "B"}, 2),
                )
            )
            async with store.batch() as writer:
                await writer.apply([create])
            await apply_migrations(conn)  # by another replica, of this release

            with pytest.raises(asyncpg.exceptions.InvalidCachedStatementError) as failed:
                async with store.batch() as writer:
                    await writer.apply([rename])
            assert is_transient(failed.value)
            async with store.batch() as writer:  # the retry
                plan = await writer.apply([rename])
            assert [v.result for v in plan.verdicts] == [Outcome.APPLIED]
        finally:
            await store.close()
        assert await conn.fetchval("SELECT name FROM users WHERE user_id = 'u1'") == "B"
    finally:
        await conn.close()
