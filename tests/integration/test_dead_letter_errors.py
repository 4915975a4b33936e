"""The ``dlq.errors`` header on dead letters the real service writes, and the conflict
that names the holder of an email even when another writer took it mid-batch."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.records import FieldError, KafkaRecord, Rejection
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import Store
from consumer.pipeline.batches import split_batch
from consumer.settings import Settings
from tests.factories import created
from tests.integration.support import (
    headers_of,
    new_settings,
    publish,
    read_topic,
    running_service,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_each_dead_letter_carries_its_errors_as_paths_and_kinds_and_a_conflict_its_holder(
    bootstrap_servers: str, database: str
) -> None:
    # Parking off: this is what is dead-lettered at once (docs/parking.md).
    settings = await new_settings(bootstrap_servers, database, partitions=1, park_ttl=timedelta(0))
    _, binary_value, binary_headers = binary_record(created("u5", 1, email="u5@example.com"))
    poison = [
        structured_record(created("u1", 1, email="held@example.com")),
        structured_record(created("u2", 1, email="HELD@example.com")),  # conflict with u1
        structured_record(
            created("u3", 1, email="u3@example.com")
            | {"time": "yesterday", "data": {"email": "not-an-email", "name": "N"}}
        ),
        (b"u4", b"{not json", []),
        (b"u5", binary_value, [(n, v) for n, v in binary_headers if n != "ce_id"]),
        structured_record(build_event("user.updated", "ghost", {"name": "G"}, source="/tests")),
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, poison)
        letters = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 5)
    by_offset = {
        int(headers_of(letter)["dlq.original.offset"]): headers_of(letter) for letter in letters
    }
    errors = {offset: json.loads(h["dlq.errors"]) for offset, h in by_offset.items()}
    assert errors == {
        1: [{"loc": "data.email", "type": "conflict", "user_id": "u1"}],
        2: [
            {"loc": "time", "type": "time_format"},
            {"loc": "data.email", "type": "value_error"},
        ],
        3: [{"loc": "", "type": "json_invalid"}],
        4: [{"loc": "id", "type": "missing"}],
        5: [{"loc": "subject", "type": "user_not_created"}],
    }
    assert by_offset[1]["dlq.error"] == b"email belongs to another active user: u1"
    # The message names each field by the path dlq.errors has (issue 23), in either mode.
    assert by_offset[2]["dlq.error"] == b"time: time_format; data.email: value_error"
    assert by_offset[4]["dlq.error"] == b"id: missing"
    assert all(b"held" not in h["dlq.errors"].lower() for h in by_offset.values())


async def test_an_email_taken_by_another_writer_mid_batch_is_a_conflict_naming_the_holder(
    database: str,
) -> None:
    """The batch fails on a record PostgreSQL cannot store and is redone record by record;
    meanwhile another transaction claims the email the next record wants, and commits
    while that record waits on the unique index. Its conflict still names the holder."""
    store = await Store.open(Settings(database_url=database, park_ttl=timedelta(0)))
    other = await asyncpg.connect(database)
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
        events = [
            created("u\u00000", 1, email="nul@example.com"),  # a user id PostgreSQL cannot store
            created("u2", 1, email="taken@example.com"),
        ]
        batch = [
            KafkaRecord("t", 0, offset, 0, key, value, tuple(headers))
            for offset, (key, value, headers) in enumerate(structured_record(e) for e in events)
        ]
        accepted, _, _ = split_batch(batch, 10**6)
        holder = other.transaction()
        await holder.start()
        await other.execute(
            "INSERT INTO users (user_id, email, name, status, created_at, updated_at, versions)"
            " VALUES ('u1', 'Taken@example.com', 'N', 'active', now(), now(), '{}')"
        )

        async def write() -> list[tuple[KafkaRecord, Rejection]]:
            async with store.batch() as writer:
                plan = await writer.apply(accepted)
            return plan.rejected

        writing = asyncio.create_task(write())
        await _until_waiting_on_a_lock(other)
        await holder.commit()
        rejected = await asyncio.wait_for(writing, 30)
    finally:
        await other.close()
        await store.close()
    assert [(record.offset, result.reason) for record, result in rejected] == [
        (0, "invalid"),
        (1, "conflict"),
    ]
    conflict = rejected[1][1]
    assert conflict.errors == (FieldError("data.email", "conflict", "u1"),)
    assert conflict.error == "email belongs to another active user: u1"


async def _until_waiting_on_a_lock(conn: asyncpg.Connection, timeout: float = 20.0) -> None:
    """Until some other backend waits for a lock (the writer, on the unique index)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database() AND pid <> pg_backend_pid()"
    ):
        assert asyncio.get_running_loop().time() < deadline, "the writer never waited"
        await asyncio.sleep(0.05)
