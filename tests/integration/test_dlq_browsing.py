"""`dlq list` filters and `dlq show` on dead letters the real service and the dead-letter
producer wrote, on the real broker; the command lines' exit codes."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from user_events_schemas import build_event, structured_record

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord, Rejection
from consumer.edges.deadletter import dead_letter_message
from consumer.edges.kafka import max_request_bytes, start_producer
from consumer.settings import Settings
from consumer.tools.dlq.criteria import Criteria
from consumer.tools.dlq.listing import ListRequest, list_dead_letters
from tests import factories
from tests.integration.support import (
    new_settings,
    publish,
    read_topic,
    running_service,
    service_env,
)
from tests.integration.test_tool_exits import Ended, run_cli

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOURS_AGO = datetime.now(UTC) - timedelta(hours=2)


def created(
    user: str, email: str, source: str = "/crm"
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = factories.created(user, 1, email=email, name="Ada Lovelace", source=source, at=T0)
    return structured_record(event)


async def dead_letters_from_hours_ago(settings: Settings) -> None:
    """Two invalid records dead-lettered two hours ago, by the dead-letter producer's own
    message builder, with that time as their Kafka timestamp too. The second, structured,
    also carries stray binary-mode headers naming another source, which decode ignores."""
    producer = await start_producer(settings)
    try:
        for offset in range(2):
            key, value, headers = created(f"old{offset}", "old@example.com", "/legacy")
            value = value.replace(b'"sequence": 1', b'"sequence": 0')  # fails the schema
            if offset == 1:
                headers += [("ce_specversion", b"1.0"), ("ce_source", b"/stray")]
            record = KafkaRecord(settings.kafka_topic, 0, offset, 0, key, value, tuple(headers))
            rejection = decode(record, settings.max_message_bytes)
            assert isinstance(rejection, Rejection)
            message = dead_letter_message(
                record, rejection, "old-group", HOURS_AGO, max_request_bytes(settings)
            )
            await producer.send_and_wait(
                settings.kafka_dlq_topic,
                value=message.value,
                key=message.key,
                headers=message.headers,
                timestamp_ms=int(HOURS_AGO.timestamp() * 1000),
            )
    finally:
        await producer.stop()


@pytest.fixture
async def dead(bootstrap_servers: str, database: str) -> Settings:
    """A dead-letter topic holding, at offsets 0-1, two old invalid dead letters from
    /legacy; then, from the live service, a conflict (u2 wants u1's email) and an
    unknown user from /billing."""
    settings = await new_settings(bootstrap_servers, database, partitions=1, park_ttl=timedelta(0))
    await dead_letters_from_hours_ago(settings)
    poison = [
        created("u1", "ada@example.com"),
        created("u2", "ADA@example.com"),
        structured_record(build_event("user.updated", "ghost", {"name": "G"}, source="/billing")),
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, poison)
        await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 4)
    return settings


async def listed(settings: Settings, criteria: Criteria | None = None) -> dict[str, Any]:
    summary = await list_dead_letters(settings, ListRequest(criteria or Criteria()))
    return summary.to_json()


async def test_the_listing_filters_by_reason_source_and_failure_time(dead: Settings) -> None:
    everything = await listed(dead)
    assert everything["total"] == everything["read"] == 4
    assert everything["by_reason"] == {"invalid": 2, "conflict": 1, "unknown_user": 1}
    conflict = await listed(dead, Criteria(reasons=frozenset({"conflict"})))
    assert conflict["total"] == 1
    (row,) = conflict["last"]
    assert (row["offset"], row["source"]) == (2, "/crm")
    assert row["errors"] == [{"loc": "data.email", "type": "conflict", "user_id": "u1"}]
    assert row["original"] == {"topic": dead.kafka_topic, "partition": 0, "offset": 1}
    billing = await listed(dead, Criteria(source="/billing"))
    assert [r["reason"] for r in billing["last"]] == ["unknown_user"]
    assert (await listed(dead, Criteria(source="/stray")))["total"] == 0
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    recent = await listed(dead, Criteria(since=an_hour_ago))
    assert recent["by_reason"] == {"conflict": 1, "unknown_user": 1}
    # Skipped ahead where the broker dates its records, else read from the beginning.
    assert recent["read"] in (2, 4)
    older = await listed(dead, Criteria(until=an_hour_ago))
    assert older["by_reason"] == {"invalid": 2}
    assert [r["source"] for r in older["last"]] == ["/legacy", "/legacy"]
    assert older["last"][0]["errors"] == [{"loc": "sequence", "type": "sequence_type"}]


async def test_the_list_command_prints_a_table_or_json_and_refuses_an_unknown_reason(
    dead: Settings,
) -> None:
    env = service_env(dead)
    table = await run_cli(["dlq", "list", "--reason", "conflict", "--reason", "unknown_user"], env)
    assert table.code == 0
    lines = table.stdout.splitlines()
    assert lines[0].endswith(
        "2 dead letters match --reason conflict --reason unknown_user (of 4 read)"
    )
    assert lines[-3].startswith("DLQ P:O")
    assert lines[-2].startswith("0:2 ") and lines[-2].endswith("data.email: conflict (held by u1)")
    assert lines[-1].startswith("0:3 ") and "/billing" in lines[-1]
    assert "ada@" not in table.stdout.lower()
    as_json = await run_cli(["dlq", "list", "--source", "/legacy", "--last", "1", "--json"], env)
    report = json.loads(as_json.stdout)
    assert as_json.code == 0 and report["total"] == 2 and len(report["last"]) == 1
    typo = await run_cli(["dlq", "list", "--reason", "conflit"], env)
    assert typo.code == 2 and not typo.stdout
    assert typo.error_line == (
        "user-events-consumer: --reason 'conflit' is not a reason: one of undecodable, "
        "invalid, unknown_type, conflict, unknown_user, too_large, user_deleted"
    )


async def test_show_prints_one_dead_letter_masked_unless_revealed_and_exits_1_when_none(
    dead: Settings,
) -> None:
    env = service_env(dead)
    shown = await run_cli(["dlq", "show", "0:2"], env)
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"dead letter 0:2 of {dead.kafka_dlq_topic}, written ")
    assert "  dlq.reason              conflict" in lines
    assert "  dlq.error               email belongs to another active user: u1" in lines
    assert "  data.email: conflict (held by u1)" in lines
    assert "ada@example.com" not in shown.stdout.lower() and "Lovelace" not in shown.stdout
    assert '    "email": "A***@***.com",' in lines
    revealed = await run_cli(["dlq", "show", "0:2", "--reveal", "--json"], env)
    letter = json.loads(revealed.stdout)
    assert revealed.code == 0 and json.loads(letter["value"])["data"]["email"] == "ADA@example.com"
    assert letter["provenance"]["dlq.original.offset"] == "1" and not letter["masked"]
    await _ends(run_cli(["dlq", "show", "0:99"], env), 1, "no dead letter at 0:99")
    await _ends(run_cli(["dlq", "show", "3:0"], env), 2, "has no partition 3")
    await _ends(
        run_cli(["dlq", "show", "two"], env), 2, "'two' is not a partition:offset such as 0:42"
    )


async def _ends(running: Awaitable[Ended], code: int, said: str) -> None:
    ended = await running
    assert ended.code == code, (ended.stdout, ended.stderr)
    assert said in (ended.stdout if code == 1 else ended.error_line)
