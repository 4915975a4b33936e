"""The store on the real PostgreSQL: offsets move only from where a batch starts, and the
statements keep using indexes as a fresh database grows."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from asyncpg.connection import LoggedQuery
from user_events_schemas import build_event, structured_record
from user_events_schemas.verdicts import is_storable, validate_python

from consumer.core.records import KafkaRecord
from consumer.edges.errors import OffsetsMoved, is_transient
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import Store
from consumer.edges.store_read import READ
from consumer.edges.store_users import (
    _LOGGED_KEYS,
    CREATE_STAGING,
    LOCK_USERS,
    UPSERT_STAGED_USERS,
)
from consumer.pipeline.batches import split_batch
from consumer.settings import Settings
from tests.factories import created, record_of
from tests.integration.support import logged_offsets, stored_offsets

TOPIC, GROUP = "t", "g"
PARTITION = (TOPIC, 0)


def records(count: int) -> list[KafkaRecord]:
    """``count`` user.created events, one user each, at offsets 0 to count - 1."""
    return [
        record_of(
            structured_record(created(f"u{i}", name="A")), topic=TOPIC, offset=i, timestamp_ms=0
        )
        for i in range(count)
    ]


async def write(store: Store, batch: list[KafkaRecord], expected: int) -> None:
    accepted, _, next_offsets = split_batch(batch, 10**6)
    async with store.batch() as writer:
        await writer.apply(accepted)
        await writer.save_offsets(GROUP, next_offsets, {PARTITION: expected})


async def test_a_batch_commits_only_from_the_offsets_it_started_at(database: str) -> None:
    store = await Store.open(Settings(database_url=database))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        log = records(6)
        # Nothing stored, nothing claimed: even a batch from the first offset is refused
        # (another member may be writing the partition's first records right now).
        with pytest.raises(OffsetsMoved):
            await write(store, log[:3], expected=0)
        assert await stored_offsets(database, GROUP) == {}
        # Positioning claims the partition; a second claim (another member's) changes
        # nothing and is told what the first one stored.
        assert await store.claim_offsets(GROUP, {PARTITION: 0}) == {PARTITION: 0}
        assert await store.claim_offsets(GROUP, {PARTITION: 2}) == {PARTITION: 0}
        await write(store, log[:3], expected=0)
        # A member evicted while it held offsets 0-5, writing after the new owner did:
        # everything it wrote rolls back with it.
        with pytest.raises(OffsetsMoved) as moved:
            await write(store, log, expected=0)
        assert moved.value.partitions == [PARTITION]
        assert await logged_offsets(database) == {0: [0, 1, 2]}
        assert await stored_offsets(database, GROUP) == {0: 3}
        await write(store, log[3:], expected=3)  # the owner goes on from where it stood
        assert await logged_offsets(database) == {0: [0, 1, 2, 3, 4, 5]}
        assert await stored_offsets(database, GROUP) == {0: 6}
        with pytest.raises(OffsetsMoved):  # a retry of a batch whose COMMIT landed
            await write(store, log[3:], expected=3)
        assert await stored_offsets(database, GROUP) == {0: 6}
    finally:
        await store.close()


async def test_a_plan_made_on_an_empty_log_does_not_scan_the_grown_log(database: str) -> None:
    store = await Store.open(Settings(database_url=database, db_pool_max_size=1))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
            await conn.execute(f"PREPARE logged_keys(text[], text[]) AS {_LOGGED_KEYS}")
        # Enough executions on the empty log for PostgreSQL to cache a generic plan, each
        # in its own turn with the (single) connection, as batches take it: the pool
        # resets the session on every release.
        for _ in range(8):
            async with store.pool.acquire() as conn:
                await conn.fetch("EXECUTE logged_keys(ARRAY['/s'], ARRAY['e'])")
        async with store.pool.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO user_events (source, event_id, user_id, type, time, kafka_topic,
                                         kafka_partition, kafka_offset, payload, outcome)
                SELECT '/s', 'e' || g, 'u' || g, 'user.created', now(), 't', 0, g, '{}', 'applied'
                FROM generate_series(1, 50000) AS g
                """
            )
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    "EXPLAIN EXECUTE logged_keys(ARRAY['/s', '/s'], ARRAY['e1', 'e2'])"
                )
            )
    finally:
        await store.close()
    # Each day of the log is a partition, looked up through its own primary key.
    assert re.search(r"Index Only Scan using user_events_\d{8}_pkey", plan), plan
    assert "Seq Scan on user_events" not in plan, plan


async def test_an_exhausted_pool_is_a_bounded_wait_then_a_transient_error(database: str) -> None:
    settings = Settings(
        database_url=database,
        db_pool_min_size=1,
        db_pool_max_size=1,
        db_pool_acquire_timeout_seconds=0.5,
    )
    store = await Store.open(settings)
    try:
        async with store.pool.acquire():  # the only connection, held
            started = time.monotonic()
            with pytest.raises(TimeoutError) as waited:
                await store.ping()
            waited_seconds = time.monotonic() - started
        assert 0.4 <= waited_seconds < 5  # the configured wait, not an instant failure
        assert is_transient(waited.value)  # retried with backoff, never dead-lettered
        await store.ping()  # released: served again
    finally:
        await store.close()


@pytest.mark.parametrize(
    "overrides",
    [
        # A NUL character: neither text nor jsonb can hold it (a DataError), whether in a
        # column of users, in the user id the batch locks on, or only in the event log's
        # payload. (A time PostgreSQL cannot store is refused by the contract itself now:
        # time_out_of_range.) The JSON Schemas and the publishers' validator refuse the
        # same strings beforehand: this is the rule they state.
        {"data": {"email": "u1@example.com", "name": "Bad\u0000Name"}},
        {"subject": "u\u00001"},
        {"id": "e\u00001"},
        {"source": "/a\u0000b"},
        {"datacontenttype": "application/json\u0000"},
        {"dataschema": "\u0000"},
    ],
    ids=["name", "subject", "id", "source", "datacontenttype", "dataschema"],
)
async def test_a_value_postgresql_cannot_store_rejects_only_its_record(
    database: str, overrides: dict[str, object]
) -> None:
    """Valid for the contract, refused on the way into PostgreSQL: the batch is redone
    record by record and only that record is rejected, instead of the batch failing on
    every retry."""
    store = await Store.open(Settings(database_url=database))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        unstorable = build_event(
            "user.created", "u1", {"email": "u1@example.com", "name": "Ada"}, source="/tests"
        )
        events = [
            build_event(
                "user.created", "u0", {"email": "u0@example.com", "name": "Ada"}, source="/tests"
            ),
            unstorable | overrides,
            build_event(
                "user.created", "u2", {"email": "u2@example.com", "name": "Grace"}, source="/tests"
            ),
        ]
        assert not is_storable(validate_python(events[1]))  # what a validator says beforehand
        batch = [
            KafkaRecord(TOPIC, 0, offset, 0, key, value, tuple(headers))
            for offset, (key, value, headers) in enumerate(structured_record(e) for e in events)
        ]
        accepted, poison, _ = split_batch(batch, 10**6)
        assert not poison  # the contract accepts it
        async with store.batch() as writer:
            plan = await writer.apply(accepted)
        assert [v.record.offset for v in plan.logged] == [0, 2]
        ((record, rejection),) = plan.rejected
        assert record.offset == 1 and rejection.reason == "invalid"
        assert rejection.error.startswith("not storable: ")
        assert await logged_offsets(database) == {0: [0, 2]}
    finally:
        await store.close()


async def test_an_event_id_reused_for_another_user_is_still_a_duplicate(database: str) -> None:
    """The batch looks up only keys its users' versions say may be logged. A publisher
    reusing an event's (source, id) for another user slips past that; the log's primary
    key catches it, and the record-by-record redo looks up every key."""
    store = await Store.open(Settings(database_url=database))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        first = build_event(
            "user.created", "u1", {"email": "u1@example.com", "name": "A"}, source="/tests"
        )
        reused = build_event(
            "user.created",
            "u2",
            {"email": "u2@example.com", "name": "B"},
            source=first["source"],
            event_id=first["id"],
        )
        other = build_event(
            "user.created", "u3", {"email": "u3@example.com", "name": "C"}, source="/tests"
        )
        batch = [
            KafkaRecord(TOPIC, 0, offset, 0, key, value, tuple(headers))
            for offset, (key, value, headers) in enumerate(
                structured_record(e) for e in (first, reused, other)
            )
        ]
        for entries in (batch[:1], batch[1:]):
            accepted, _, _ = split_batch(entries, 10**6)
            async with store.batch() as writer:
                plan = await writer.apply(accepted)
        assert [(v.event.subject, str(v.result)) for v in plan.verdicts] == [
            ("u2", "duplicate"),
            ("u3", "applied"),
        ]
        assert await logged_offsets(database) == {0: [0, 2]}
        async with store.pool.acquire() as conn:
            users = {row["user_id"] for row in await conn.fetch("SELECT user_id FROM users")}
        assert users == {"u1", "u3"}
    finally:
        await store.close()


async def test_a_logged_event_the_versions_miss_is_a_duplicate_not_a_rejection(
    database: str,
) -> None:
    """A state the versions rule does not cover (here: a user row older than its logged
    events, as an earlier rule could leave it): a redelivered update would plan as a
    rejection (unknown user), which the primary key never sees; it is looked up and
    stays a duplicate."""
    store = await Store.open(Settings(database_url=database))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        history = [
            build_event(
                "user.created",
                "u1",
                {"email": "u1@x.io", "name": "A"},
                source="/tests",
                sequence=1,
                time=t0,
            ),
            build_event("user.updated", "u1", {"name": "B"}, source="/tests", sequence=2, time=t0),
        ]
        batch = [
            KafkaRecord(TOPIC, 0, offset, 0, key, value, tuple(headers))
            for offset, (key, value, headers) in enumerate(structured_record(e) for e in history)
        ]
        accepted, _, _ = split_batch(batch, 10**6)
        async with store.batch() as writer:
            await writer.apply(accepted)
        async with store.pool.acquire() as conn:  # deleted, at a version before the update
            await conn.execute(
                "UPDATE users SET status = 'deleted', email = NULL, name = NULL,"
                " versions = jsonb_build_object('status', versions::jsonb->'status',"
                " 'email', versions::jsonb->'status', 'name', versions::jsonb->'status')"
            )
        async with store.batch() as writer:
            plan = await writer.apply(accepted[1:])  # the update, delivered again
        assert [str(v.result) for v in plan.verdicts] == ["duplicate"]
        assert await logged_offsets(database) == {0: [0, 1]}
    finally:
        await store.close()


async def test_a_batch_reads_once_after_its_locks_then_writes(database: str) -> None:
    """What a batch sends, statement by statement (the COPYs aside, which asyncpg does
    not log): the users' locks, one read, then the writes. A redelivery (events not
    newer than their users) adds one look-up of the keys the log may hold, before the
    plan."""
    store = await Store.open(Settings(database_url=database))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        accepted, _, _ = split_batch(records(3), 10**6)
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            if not query.query.startswith(("SAVEPOINT", "RELEASE")):
                sent.append(query.query)

        for expected in (
            [LOCK_USERS, READ, CREATE_STAGING, UPSERT_STAGED_USERS],
            [LOCK_USERS, READ, _LOGGED_KEYS],  # all three are duplicates: nothing to write
        ):
            sent.clear()
            async with store.batch() as writer:
                writer.conn.add_query_logger(log)
                await writer.apply(accepted)
                writer.conn.remove_query_logger(log)
            assert sent == expected
    finally:
        await store.close()
