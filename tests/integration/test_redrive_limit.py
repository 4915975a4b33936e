"""`dlq redrive` on the real broker and PostgreSQL: a dead letter refused at
--max-redrives is redriven once the limit is raised, and still only once; --reason takes
only the contract's reasons; migration 0003 recognises refusals recorded before it."""

from __future__ import annotations

import asyncpg
import pytest
from user_events_schemas import build_event, structured_record

from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.edges.deadletter import DeadLetterQueue
from consumer.edges.kafka import max_request_bytes, start_producer
from consumer.edges.migrate import apply_migrations, shipped_migrations
from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from consumer.tools.dlq.redrive import RedriveRequest, redrive
from consumer.tools.dlq.redrive_rules import RedriveReport
from tests.integration.support import fetch, headers_of, new_settings, read_all, service_env
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration


async def dead_letter(settings: Settings, redriven_before: int) -> None:
    """An unknown-user record that was redriven ``redriven_before`` times, dead-lettered
    again by the consumer's dead-letter producer."""
    key, value, headers = structured_record(
        build_event("user.updated", "ghost", {"name": "G"}, source="/tests")
    )
    count = ("dlq.redrive.count", str(redriven_before).encode())
    record = KafkaRecord(settings.kafka_topic, 0, 7, 0, key, value, (*headers, count))
    producer = await start_producer(settings)
    try:
        queue = DeadLetterQueue(
            producer, settings.kafka_dlq_topic, settings.kafka_group_id, max_request_bytes(settings)
        )
        rejection = Rejection(Reason.UNKNOWN_USER, "user.updated for a deleted user")
        await queue.send_all([(record, rejection)])
    finally:
        await producer.stop()


async def run(settings: Settings, max_redrives: int) -> RedriveReport:
    store = await open_tool_store(settings)
    try:
        return await redrive(settings, store, RedriveRequest(max_redrives=max_redrives))
    finally:
        await store.close()


def outcome(report: RedriveReport) -> tuple[int, int, int]:
    return sum(report.redriven.values()), len(report.refused), report.waiting_at_limit


async def test_a_letter_refused_at_the_limit_is_redriven_once_the_limit_is_raised_and_only_once(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    await dead_letter(settings, redriven_before=3)
    assert outcome(await run(settings, 3)) == (0, 1, 0)  # refused: exit 1
    assert outcome(await run(settings, 3)) == (0, 0, 1)  # waits, and says so: exit 0
    assert outcome(await run(settings, 4)) == (1, 0, 0)  # the raised limit redrives it
    assert outcome(await run(settings, 9)) == (0, 0, 0)  # never twice
    (copy,) = await read_all(bootstrap_servers, settings.kafka_topic)
    assert headers_of(copy)["dlq.redrive.count"] == b"4"
    rows = await fetch(
        database, "SELECT outcome, refused_at_limit, redrive_count FROM dlq_redrives"
    )
    assert [tuple(r) for r in rows] == [("redriven", False, 4)]
    # A letter after it is redriven as usual, the position moving past both.
    await dead_letter(settings, redriven_before=0)
    assert outcome(await run(settings, 9)) == (1, 0, 0)
    positions = await fetch(database, "SELECT next_offset FROM dlq_redrive_positions")
    assert [r["next_offset"] for r in positions] == [2]


async def test_redrive_refuses_a_reason_outside_the_contract_with_exit_2(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    await dead_letter(settings, redriven_before=0)
    env = service_env(settings)
    typo = await run_cli(["dlq", "redrive", "--reason", "unknown-user"], env)
    assert typo.code == 2 and not typo.stdout
    assert "--reason 'unknown-user' is not a reason: one of undecodable," in typo.error_line
    chosen = await run_cli(["dlq", "redrive", "--reason", "unknown_user"], env)
    assert chosen.code == 0 and "redrove 1 dead letters" in chosen.stdout


async def test_the_migration_marks_refusals_at_the_limit_recorded_before_it(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        for migration in shipped_migrations()[:2]:  # the schema 0002 left
            await conn.execute(migration.sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'initial'), (2, 'dlq_redrive');"
            "INSERT INTO dlq_redrives (dlq_topic, partition, dlq_offset, outcome, reason,"
            " redrive_count, detail) VALUES"
            " ('d', 0, 0, 'refused', 'conflict', 3, 'redriven 3 times already (limit 3)'),"
            " ('d', 0, 1, 'refused', 'invalid', 0, 'no dlq.original.topic header'),"
            " ('d', 0, 2, 'redriven', 'conflict', 1, NULL)"
        )
        applied = await apply_migrations(conn)
        assert "dlq_redrive_limit" in [m.name for m in applied]
        rows = await conn.fetch(
            "SELECT dlq_offset, refused_at_limit FROM dlq_redrives ORDER BY dlq_offset"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(0, True), (1, False), (2, False)]
