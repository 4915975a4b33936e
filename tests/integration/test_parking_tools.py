"""`event`, `status` and `GET /status` on parked and healed events, against the real
broker and PostgreSQL: the service parks an update for a user never created and an email
change that collides with another active user; the tools say so (why, for what, since
when, never the email); later events heal both and `event` says how long they waited."""

from __future__ import annotations

import asyncio
import json

import pytest
from user_events_devtools.devenv import free_port
from user_events_schemas import structured_record

from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from consumer.tools.event.query import ByKey, ByPosition
from consumer.tools.status.gather import gather_status
from consumer.tools.status.report import StatusReport
from tests.integration.support import (
    count_logged,
    eventually,
    fetch,
    get,
    new_settings,
    publish,
    running_service,
    service_env,
)
from tests.integration.test_event import ask, event
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration


# Personal data the tools must never show.
PERSONAL = (
    "ada@example.com",
    "bea@example.com",
    "cy@example.com",
    "ada.new@example.com",
    "Canary Ada",
    "Canary Bea",
    "Canary Cy",
)

FIRST = [
    structured_record(
        event("user.created", "a", 1, "a-1", email="ada@example.com", name="Canary Ada")
    ),
    structured_record(
        event("user.created", "b", 1, "b-1", email="bea@example.com", name="Canary Bea")
    ),
    # 2: parked, unknown_user (ghost was never created).
    structured_record(event("user.updated", "ghost", 2, "ghost-2", name="Canary Cy")),
    # 3: parked, conflict (a holds the email, whatever its case).
    structured_record(event("user.updated", "b", 2, "b-2", email="ADA@example.com")),
]
# The ghost's create heals 2; a's new email frees the one b waits for, which heals 3.
LATER = [
    structured_record(
        event("user.created", "ghost", 1, "ghost-1", email="cy@example.com", name="Canary Cy")
    ),
    structured_record(event("user.updated", "a", 2, "a-2", email="ada.new@example.com")),
]


async def status_of(settings: Settings) -> StatusReport:
    store = await open_tool_store(settings, migrate=False)
    try:
        return await gather_status(settings, store)
    finally:
        await store.close()


async def parked_rows(database: str) -> int:
    try:
        rows = await fetch(database, "SELECT count(*) AS n FROM parked_events")
    except Exception:  # not migrated yet
        return -1
    return int(rows[0]["n"])


def no_personal_data(text: str) -> None:
    lowered = text.lower()
    for value in PERSONAL:
        assert value.lower() not in lowered, value


async def test_event_and_status_tell_parked_events_and_how_long_healed_ones_waited(
    bootstrap_servers: str, database: str
) -> None:
    port = free_port()
    settings = await new_settings(
        bootstrap_servers,
        database,
        partitions=1,
        park_sweep_interval_seconds=0.5,
        http_port=port,
    )
    topic, env = settings.kafka_topic, service_env(settings)
    async with running_service(settings):
        await publish(bootstrap_servers, topic, FIRST)

        async def both_parked() -> bool:
            return await parked_rows(database) == 2 and await count_logged(database) == 2

        await eventually(both_parked)

        ghost = await ask(settings, ByKey("/profile", "ghost-2"))
        assert ghost.verdict == "parked" and ghost.complete and ghost.logged is None
        assert ghost.parked is not None and not ghost.dead_letters
        assert (ghost.parked.reason, ghost.parked.user_id) == ("unknown_user", "ghost")
        assert (ghost.parked.kafka_topic, ghost.parked.kafka_offset) == (topic, 2)
        assert ghost.to_json()["parked"]["waits_for"] == {
            "what": "user_created",
            "user_id": "ghost",
        }

        conflict = await ask(settings, ByPosition(0, 3))
        assert conflict.verdict == "parked" and conflict.key == ("/profile", "b-2")
        assert conflict.parked is not None and conflict.parked.reason == "conflict"
        assert conflict.to_json()["parked"]["waits_for"] == {
            "what": "email_freed",
            "email_held_by": "a",
        }

        shown = await run_cli(["event", "--source", "/profile", "--id", "ghost-2"], env)
        assert shown.code == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[:2] == ["event /profile ghost-2: parked", "  event log: not there"]
        assert lines[2].startswith(
            f"  parked: unknown_user, user ghost, from {topic} 0:2, parked at "
        )
        assert lines[3] == "  waits for the user's user.created (user id ghost)"
        held = await run_cli(["event", "--source", "/profile", "--id", "b-2"], env)
        assert held.code == 0
        assert (
            "  waits for its email to be freed by another active user (held now by user a)"
            in held.stdout.splitlines()
        )
        as_json = await run_cli(["event", "--at", "0:3", "--json"], env)
        assert as_json.code == 0 and json.loads(as_json.stdout)["verdict"] == "parked"
        for output in (shown, held, as_json):
            no_personal_data(output.stdout + output.stderr)

        report = await status_of(settings)
        assert report.parked is not None and report.complete
        assert report.parked.by_reason == {"unknown_user": 1, "conflict": 1}
        table = await run_cli(["status"], env)
        assert table.code == 0
        assert "parked events: 2 (1 unknown_user, 1 conflict), the oldest parked at" in table.stdout
        # Parked events never make `status` exit 1.
        limited = await run_cli(["status", "--json", "--max-lag-seconds", "600"], env)
        assert limited.code == 0
        parked = json.loads(limited.stdout)["parked"]
        assert parked["events"] == 2
        assert parked["by_reason"] == {"unknown_user": 1, "conflict": 1}
        assert parked["oldest_parked_at"] and parked["oldest_age_seconds"] >= 0

        async def member_sees(events: int) -> bool:
            code, body = await get(port, "/status")
            return code == 200 and json.loads(body)["parked"]["events"] == events

        await eventually(lambda: member_sees(2))
        _, body = await get(port, "/status")
        member = json.loads(body)["parked"]
        assert member["ttl_seconds"] == 86_400 and member["read_every_seconds"] == 0.5
        assert member["oldest_age_seconds"] >= 0

        await asyncio.sleep(1.2)  # so that the wait is measurable
        await publish(bootstrap_servers, topic, LATER)

        async def healed() -> bool:
            return await parked_rows(database) == 0 and await count_logged(database) == 6

        await eventually(healed)
        await eventually(lambda: member_sees(0))

    for source, event_id in (("/profile", "ghost-2"), ("/profile", "b-2")):
        answer = await ask(settings, ByKey(source, event_id))
        assert answer.verdict == "applied" and answer.parked is None
        assert answer.logged is not None and answer.logged.parked_at is not None
        waited = answer.logged.healed_after_seconds
        assert waited is not None and 1.0 <= waited < 30
        assert answer.to_json()["log"]["healed_after_seconds"] == waited
    # Its own Kafka position, not the one of the event that healed it.
    assert answer.logged.kafka_offset == 3
    on_arrival = await ask(settings, ByKey("/signup", "ghost-1"))
    assert on_arrival.logged is not None and on_arrival.logged.healed_after_seconds is None

    shown = await run_cli(["event", "--source", "/profile", "--id", "ghost-2"], env)
    assert shown.code == 0
    lines = shown.stdout.splitlines()
    assert lines[0] == "event /profile ghost-2: applied"
    assert lines[2].startswith("  healed after ") and "s: parked at " in lines[2]
    as_json = await run_cli(["event", "--source", "/profile", "--id", "b-2", "--json"], env)
    log = json.loads(as_json.stdout)["log"]
    assert log["outcome"] == "applied" and log["healed_after_seconds"] >= 1.0
    assert log["parked_at"] is not None
    table = await run_cli(["status"], env)
    assert table.code == 0 and "parked events: none" in table.stdout.splitlines()
    for output in (shown, as_json, table):
        no_personal_data(output.stdout + output.stderr)
