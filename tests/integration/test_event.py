"""`event` on the real broker and PostgreSQL: applied, stale, duplicate, dead-lettered
(by source and id in either mode, or by position), pending and unknown events. Parked and
healed events: tests/integration/test_parking_tools.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from user_events_schemas import binary_record, build_event, structured_record

from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from consumer.tools.event.answer import EventAnswer
from consumer.tools.event.lookup import find_event
from consumer.tools.event.query import ByKey, ByPosition
from tests.integration.support import (
    eventually,
    logged_is,
    new_settings,
    publish,
    read_all,
    running_service,
    service_env,
)
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: str, user: str, seq: int, event_id: str, **data: str) -> dict[str, Any]:
    return build_event(
        kind,
        user,
        data or None,
        source="/signup" if kind == "user.created" else "/profile",
        sequence=seq,
        time=T0 + timedelta(seconds=seq),
        event_id=event_id,
    )


CREATED = event("user.created", "u1", 1, "e-1", email="ada@example.com", name="Ada")
RENAMED = event("user.updated", "u1", 3, "e-3", name="Bea")
STALE = event("user.updated", "u1", 2, "e-2", name="Old")  # older than RENAMED
GHOST = event("user.updated", "ghost", 1, "e-ghost", name="Cy")  # no such user (no parking)
INVALID = {
    **event("user.created", "u2", 1, "e-bad", email="d@example.com", name="D"),
    "data": {"email": "not-an-address", "name": "D"},
}
# Offsets on the topic's one partition.
RECORDS = [
    structured_record(CREATED),  # 0: applied
    structured_record(CREATED),  # 1: a duplicate of 0
    structured_record(RENAMED),  # 2: applied
    structured_record(STALE),  # 3: stale
    binary_record(GHOST),  # 4: dead-lettered, unknown_user
    (b"x", b"{ not json", []),  # 5: dead-lettered, undecodable, no source or id
    binary_record(INVALID),  # 6: dead-lettered, invalid
]


async def ask(settings: Settings, query: ByKey | ByPosition) -> EventAnswer:
    store = await open_tool_store(settings, migrate=False)
    try:
        return await find_event(settings, store, query)
    finally:
        await store.close()


async def test_event_tells_applied_stale_duplicate_dead_lettered_pending_and_unknown_apart(
    bootstrap_servers: str, database: str
) -> None:
    # Parking off (PARK_TTL=0): GHOST is dead-lettered at once, not parked.
    settings = await new_settings(bootstrap_servers, database, partitions=1, park_ttl=timedelta(0))
    topic, dlq = settings.kafka_topic, settings.kafka_dlq_topic
    async with running_service(settings):
        await publish(bootstrap_servers, topic, RECORDS)
        await eventually(lambda: logged_is(database, 3))

        async def dead_lettered_all() -> bool:
            return len(await read_all(bootstrap_servers, dlq)) == 3

        await eventually(dead_lettered_all)

    applied = await ask(settings, ByKey("/signup", "e-1"))
    assert applied.verdict == "applied" and applied.complete and not applied.dead_letters
    assert applied.logged is not None
    assert (applied.logged.user_id, applied.logged.type) == ("u1", "user.created")
    assert (applied.logged.kafka_topic, applied.logged.kafka_partition) == (topic, 0)
    assert applied.logged.kafka_offset == 0 and applied.logged.recorded_at

    duplicate = await ask(settings, ByPosition(0, 1))
    assert duplicate.verdict == "duplicate" and duplicate.key == ("/signup", "e-1")
    assert duplicate.logged is not None and duplicate.logged.kafka_offset == 0
    assert (await ask(settings, ByPosition(0, 0))).verdict == "applied"

    stale = await ask(settings, ByKey("/profile", "e-2"))
    assert stale.verdict == "stale" and stale.logged is not None
    assert stale.logged.kafka_offset == 3

    ghost = await ask(settings, ByKey("/profile", "e-ghost"))  # binary mode: ce_ headers
    assert ghost.verdict == "dead_lettered" and ghost.logged is None
    [letter] = ghost.dead_letters
    assert (letter.reason, letter.original) == ("unknown_user", (topic, 0, 4))
    assert letter.errors == [{"loc": "subject", "type": "user_not_created"}]
    assert letter.consumer_group == settings.kafka_group_id and letter.error

    undecodable = await ask(settings, ByPosition(0, 5))
    assert undecodable.verdict == "dead_lettered" and undecodable.key is None
    assert [d.reason for d in undecodable.dead_letters] == ["undecodable"]
    assert undecodable.to_json()["record"]["rejection"]["reason"] == "undecodable"

    invalid = await ask(settings, ByKey("/signup", "e-bad"))
    assert invalid.verdict == "dead_lettered"
    assert [(d.reason, d.original) for d in invalid.dead_letters] == [("invalid", (topic, 0, 6))]

    unknown = await ask(settings, ByKey("/signup", "never-sent"))
    assert unknown.verdict == "not_found" and not unknown.complete

    # Published after the consumer stopped: at an offset it has not reached.
    await publish(
        bootstrap_servers, topic, [structured_record(event("user.deleted", "u1", 9, "e-9"))]
    )
    pending = await ask(settings, ByPosition(0, 7))
    assert pending.verdict == "pending" and pending.stored_offset == 7 and not pending.complete
    assert pending.key == ("/profile", "e-9")

    env = service_env(settings)
    found = await run_cli(["event", "--source", "/profile", "--id", "e-ghost"], env)
    assert found.code == 0
    assert found.stdout.splitlines()[:2] == [
        "event /profile e-ghost: dead-lettered",
        "  event log: not there",
    ]
    assert f"dead letter {dlq} 0:0: unknown_user (" in found.stdout
    assert f"from {topic} 0:4" in found.stdout
    by_position = await run_cli(["event", "--at", "0:1", "--json"], env)
    assert by_position.code == 0 and json.loads(by_position.stdout)["verdict"] == "duplicate"
    missing = await run_cli(["event", "--source", "/signup", "--id", "never-sent"], env)
    assert missing.code == 1 and "event /signup never-sent: not found" in missing.stdout
    pending_cli = await run_cli(["event", "--at", "0:7"], env)
    assert (
        pending_cli.code == 1 and "has not reached it yet (stored: offset 7)" in pending_cli.stdout
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["event", "--source", "/signup"], "give --source and --id together"),
        (["event", "--at", "0:1", "--id", "e-1"], "not both"),
        (["event", "--at", "0:1,1:2"], "--at '0:1,1:2' is not a partition:offset such as 0:42"),
        (["event", "--at", "zero"], "--at 'zero' is not a partition:offset"),
        (["event", "--at", "-1:0"], "--at '-1:0' has partition -1: a partition is 0 or more"),
        (["event", "--source", "/s", "--id", "1", "--topic", "t"], "--topic goes with --at"),
        (["event", "--at", "3:0"], "has no partition 3"),
        (["event", "--at", "0:5"], "holds no records: none at 5"),
    ],
)
async def test_event_with_a_bad_question_says_why_in_one_line_and_exits_2(
    bootstrap_servers: str, database: str, args: list[str], said: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    store = await open_tool_store(settings)  # migrated, so that only the question fails
    await store.close()
    ended = await run_cli(args, service_env(settings))
    assert ended.code == 2 and said in ended.error_line and not ended.stdout
