"""Parking: events that arrive before what they wait for (their user's create, an email
another user still holds) wait in PostgreSQL and heal when it lands. Real broker, real
PostgreSQL, the real ``run`` process and the real tools."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from user_events_devtools.devenv import free_port

from consumer.settings import Settings
from tests.integration.privacy import Person, created, deleted, updated, where_found
from tests.integration.support import (
    eventually,
    fetch,
    get,
    new_settings,
    publish,
    read_all,
    scrape,
    service_env,
    start_service_process,
)
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration

# Sweeps often, so that expiry and the catch-up show within a test's patience.
FAST_SWEEP = {"PARK_SWEEP_INTERVAL_SECONDS": "0.3"}


def message(published: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (published["subject"].encode(), orjson.dumps(published), [])


class Member:
    """One `run` process: its port and its JSON log lines."""

    def __init__(self, process: Any, port: int, log_path: Path) -> None:
        self.process, self.port, self.log_path = process, port, log_path

    def logged(self, message: str) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if e.get("message") == message]

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return await scrape(self.port)

    async def counter(self, name: str, reason: str) -> float:
        return (await self.samples())[(name, (("reason", reason),))]


@asynccontextmanager
async def member(settings: Settings, **env: str) -> AsyncIterator[Member]:
    """The real `run` process, answering /metrics; stopped by SIGTERM, which it must obey."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False) as log_file:
        process = start_service_process(
            settings, stderr=log_file, HTTP_PORT=str(port), LOG_FORMAT="json", **env
        )
        running = Member(process, port, Path(log_file.name))
        try:

            async def answers() -> bool:
                return (await get(port, "/readyz"))[0] == 200

            await eventually(answers)
            yield running
        finally:
            if process.poll() is None:
                process.terminate()
                assert process.wait(30) == 0


async def parked(database: str, *user_ids: str) -> list[Any]:
    """The parked rows of ``user_ids`` (none while the service has not migrated yet)."""
    try:
        return await fetch(
            database,
            "SELECT source, event_id, user_id, reason, parked_at FROM parked_events "
            "WHERE user_id = ANY($1::text[])",
            list(user_ids),
        )
    except asyncpg.UndefinedTableError:
        return []


async def parked_is(database: str, count: int, *user_ids: str) -> bool:
    return len(await parked(database, *user_ids)) == count


async def state(database: str, *user_ids: str) -> dict[str, tuple[Any, ...]]:
    rows = await fetch(
        database,
        "SELECT user_id, status, email, name FROM users WHERE user_id = ANY($1::text[])",
        list(user_ids),
    )
    return {r["user_id"]: (r["status"], r["email"], r["name"]) for r in rows}


async def logged(database: str, *user_ids: str) -> list[Any]:
    return await fetch(
        database,
        "SELECT event_id, outcome, kafka_partition, kafka_offset, parked_at, recorded_at "
        "FROM user_events WHERE user_id = ANY($1::text[]) ORDER BY recorded_at, event_id",
        list(user_ids),
    )


async def test_an_update_before_its_create_in_another_partition_heals(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    who = Person.new("early")
    later = who.renamed()
    early_update = updated(later, 2)
    async with member(settings, **FAST_SWEEP) as service:
        await publish(bootstrap_servers, settings.kafka_topic, [message(early_update)], 0)

        await eventually(lambda: parked_is(database, 1, who.user_id))
        assert await logged(database, who.user_id) == []
        assert await service.counter("user_events_parked_total", "unknown_user") == 1
        await asyncio.sleep(2)  # a few seconds later, its create lands in another partition
        await publish(bootstrap_servers, settings.kafka_topic, [message(created(who, 1))], 1)

        await eventually(lambda: parked_is(database, 0, who.user_id))
        # As if applied in order: created, then updated.
        assert await state(database, who.user_id) == {
            who.user_id: ("active", later.email, later.name)
        }
        rows = {row["event_id"]: row for row in await logged(database, who.user_id)}
        update_row = rows[early_update["id"]]
        # Logged with its own provenance, and when it was parked.
        assert (update_row["outcome"], update_row["kafka_partition"]) == ("applied", 0)
        assert update_row["parked_at"] is not None
        waited = (update_row["recorded_at"] - update_row["parked_at"]).total_seconds()
        assert waited >= 2
        assert await service.counter("user_events_healed_total", "unknown_user") == 1
        healed_lines = service.logged("parked event healed")
        assert [line["event_id"] for line in healed_lines] == [early_update["id"]]
        # Nothing personal in the log lines.
        assert later.email not in service.log_path.read_text()
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2) == []


async def test_an_email_freed_in_another_partition_goes_to_the_user_who_waited(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    a, b = Person.new("holder"), Person.new("claimer")
    a_moved = Person(a.user_id, Person.new("y").email, a.name)
    b_wants = Person(b.user_id, a.email, b.name)  # the email a holds now
    async with member(settings, **FAST_SWEEP) as service:
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [message(created(a, 1)), message(created(b, 1)), message(updated(b_wants, 5))],
            0,
        )

        async def conflict_parked() -> bool:
            rows = await parked(database, b.user_id)
            return [r["reason"] for r in rows] == ["conflict"]

        await eventually(conflict_parked)
        assert (await state(database, b.user_id))[b.user_id][1] == b.email
        # a gives the email up, in the other partition.
        await publish(bootstrap_servers, settings.kafka_topic, [message(updated(a_moved, 3))], 1)

        await eventually(lambda: parked_is(database, 0, b.user_id))
        # The reference: every register last-writer-wins, whatever the arrival order.
        assert await state(database, a.user_id, b.user_id) == {
            a.user_id: ("active", a_moved.email, a.name),
            b.user_id: ("active", a.email, b.name),
        }
        assert await service.counter("user_events_healed_total", "conflict") == 1
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2) == []


async def test_an_event_nothing_heals_is_dead_lettered_once_after_the_ttl_then_redriven(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    who = Person.new("orphan")
    orphan = updated(who, 2)
    async with member(settings, PARK_TTL="2s", **FAST_SWEEP) as service:
        await publish(bootstrap_servers, settings.kafka_topic, [message(orphan)])

        async def dead_lettered() -> bool:
            letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=1)
            return len(letters) == 1

        await eventually(dead_lettered)
        assert not await parked(database, who.user_id)
        await asyncio.sleep(1.5)  # several more sweeps: still one
        (letter,) = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2)
        headers = dict(letter.headers)
        # Its original reason and provenance, and how long it waited.
        assert headers["dlq.reason"] == b"unknown_user"
        assert headers["dlq.original.partition"] == b"0"
        assert headers["dlq.original.offset"] == b"0"
        assert int(headers["dlq.parked.seconds"]) >= 2
        assert "dlq.parked.at" in headers and letter.value == message(orphan)[1]
        assert await service.counter("user_events_park_expired_total", "unknown_user") == 1
        assert service.logged("parked event expired; dead-lettered")[0]["event_id"] == orphan["id"]

        # The fix lands, and `dlq redrive` brings the letter back, as before parking.
        await publish(bootstrap_servers, settings.kafka_topic, [message(created(who, 1))])
        env = service_env(settings)
        redriven = await run_cli(["dlq", "redrive", "--reason", "unknown_user"], env)
        assert redriven.code == 0, redriven.stderr

        async def applied() -> bool:
            rows = await logged(database, who.user_id)
            return [r["outcome"] for r in rows] == ["applied", "applied"]

        await eventually(applied)
        assert await state(database, who.user_id) == {who.user_id: ("active", who.email, who.name)}


async def test_past_the_bounds_events_are_dead_lettered_at_once(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    u, v = Person.new("many"), Person.new("more")
    orphans = [updated(u, 2), updated(u, 3), updated(u, 4), updated(v, 2), updated(v, 3)]
    bounds = {"PARK_MAX_PER_USER": "2", "PARK_MAX_ROWS": "3"}
    async with member(settings, **bounds, **FAST_SWEEP):
        await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in orphans])

        async def two_letters() -> bool:
            letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=1)
            return len(letters) >= 2

        await eventually(two_letters)
        letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2)
        # u's third (per user), then v's second (in all): at once, with their own reason.
        assert sorted(int(dict(d.headers)["dlq.original.offset"]) for d in letters) == [2, 4]
        assert {dict(d.headers)["dlq.reason"] for d in letters} == {b"unknown_user"}
        assert not any("dlq.parked.at" in dict(d.headers) for d in letters)
        kept = await parked(database, u.user_id, v.user_id)
        assert sorted(r["event_id"] for r in kept) == sorted(
            e["id"] for e in (orphans[0], orphans[1], orphans[3])
        )


async def test_a_kill_between_parking_and_healing_heals_exactly_once_after_restart(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    who = Person.new("killed")
    update, create = updated(who.renamed(), 2), created(who, 1)
    process = start_service_process(settings, **FAST_SWEEP)
    try:
        await publish(bootstrap_servers, settings.kafka_topic, [message(update)], 0)

        await eventually(lambda: parked_is(database, 1, who.user_id))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    await publish(bootstrap_servers, settings.kafka_topic, [message(create)], 1)
    async with member(settings, **FAST_SWEEP):

        async def healed() -> bool:
            return (
                not await parked(database, who.user_id)
                and len(await logged(database, who.user_id)) == 2
            )

        await eventually(healed)
        await asyncio.sleep(1)  # a redelivery of the update, had there been one, is in
        rows = await logged(database, who.user_id)
        assert sorted(r["event_id"] for r in rows) == sorted([update["id"], create["id"]])
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2) == []


async def test_in_a_group_of_three_one_member_parks_and_another_heals(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    who = Person.new("grouped")
    update = updated(who.renamed(), 2)
    async with (
        member(settings, **FAST_SWEEP) as first,
        member(settings, **FAST_SWEEP) as second,
        member(settings, **FAST_SWEEP) as third,
    ):
        members = (first, second, third)

        async def one_partition_each() -> bool:
            owned = []
            for m in members:
                status, body = await get(m.port, "/status")
                if status != 200:
                    return False
                owned.append(len(json.loads(body).get("partitions", [])))
            return owned == [1, 1, 1]

        await eventually(one_partition_each, timeout=60)
        await publish(bootstrap_servers, settings.kafka_topic, [message(update)], 0)

        await eventually(lambda: parked_is(database, 1, who.user_id))
        await publish(bootstrap_servers, settings.kafka_topic, [message(created(who, 1))], 1)

        await eventually(lambda: parked_is(database, 0, who.user_id))
        parkers = [m for m in members if m.logged("event parked")]
        healers = [m for m in members if m.logged("parked event healed")]
        assert len(parkers) == 1 and len(healers) == 1 and parkers != healers
        after = (await state(database, who.user_id))[who.user_id]
        assert after[0] == "active" and after[1:] == (
            update["data"]["email"],
            update["data"]["name"],
        )


async def test_a_replay_over_parked_events_neither_parks_nor_applies_them_twice(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    who = Person.new("replayed")
    update, create = updated(who.renamed(), 2), created(who, 1)
    env = service_env(settings)
    await publish(bootstrap_servers, settings.kafka_topic, [message(update)])
    first = await run_cli(["replay", "--from", "earliest"], env)
    assert first.code == 0, first.stderr
    again = await run_cli(["replay", "--from", "earliest"], env)
    assert again.code == 0, again.stderr
    assert len(await parked(database, who.user_id)) == 1

    await publish(bootstrap_servers, settings.kafka_topic, [message(create)])
    healing = await run_cli(["replay", "--from", "earliest"], env)
    assert healing.code == 0, healing.stderr
    assert not await parked(database, who.user_id)
    once = await run_cli(["replay", "--from", "earliest"], env)
    assert once.code == 0, once.stderr
    rows = await logged(database, who.user_id)
    assert sorted(r["event_id"] for r in rows) == sorted([update["id"], create["id"]])
    assert [r["parked_at"] is not None for r in rows if r["event_id"] == update["id"]] == [True]
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2) == []


async def test_erasure_reaches_parked_events(bootstrap_servers: str, database: str) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    asked = Person.new("asked")  # erased on request while its events wait
    gone = Person.new("gone")  # deleted by an event while a newer update waits
    conflicted = Person.new("conflicted")  # deleted while its conflict waits
    holder = Person.new("holder")
    wants_held = Person(conflicted.user_id, holder.email, conflicted.renamed().name)
    gone_late = gone.renamed()
    history = [
        updated(asked, 2),
        created(holder, 1),
        created(conflicted, 1),
        updated(wants_held, 2),  # conflict: parked
        updated(gone_late, 5),  # gone's create has not landed: parked
    ]
    env = service_env(settings)
    async with member(settings, **FAST_SWEEP):
        await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in history])

        async def all_parked() -> bool:
            rows = await parked(database, asked.user_id, conflicted.user_id, gone.user_id)
            return len(rows) == 3

        await eventually(all_parked)
        assert await where_found(database, asked.canaries)  # the scan finds parked values
        erased = await run_cli(["erase", "--user-id", asked.user_id, "--reason", "ticket 7"], env)
        assert erased.code == 0 and "1 parked events" in erased.stdout, erased
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [
                message(created(gone, 1)),
                message(deleted(gone, 3)),
                message(deleted(conflicted, 3)),
            ],
        )

        async def none_parked() -> bool:
            rows = await parked(database, asked.user_id, conflicted.user_id, gone.user_id)
            return not rows

        await eventually(none_parked)
    for person in (asked, gone, gone_late, conflicted):
        assert await where_found(database, person.canaries) == [], person
    assert await where_found(database, (wants_held.name,)) == []
    # gone's update was newer than its delete: dead-lettered as an update arriving after
    # the delete would be; conflicted's was older: stale, logged without its values.
    letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=2)
    assert [dict(d.headers)["dlq.reason"] for d in letters] == [b"user_deleted"]
    outcomes = {r["event_id"]: r["outcome"] for r in await logged(database, conflicted.user_id)}
    assert outcomes[history[3]["id"]] == "stale"


async def test_parking_off_dead_letters_at_once_and_what_was_left_parked(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    left, new = Person.new("left"), Person.new("new")
    async with member(settings, **FAST_SWEEP):
        await publish(bootstrap_servers, settings.kafka_topic, [message(updated(left, 2))])

        await eventually(lambda: parked_is(database, 1, left.user_id))
    async with member(settings, PARK_TTL="0", **FAST_SWEEP) as service:
        await publish(bootstrap_servers, settings.kafka_topic, [message(updated(new, 2))])

        async def both_dead() -> bool:
            letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic, timeout=1)
            return len(letters) == 2

        await eventually(both_dead)
        assert not await parked(database, left.user_id, new.user_id)
        assert (await service.samples())[("user_events_park_ttl_seconds", ())] == 0
