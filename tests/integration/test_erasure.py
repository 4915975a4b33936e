"""Erasure: a delete, or an ``erase`` request, removes a user's email and name from every
table of the service, keeps the audit trail, and nothing brings them back (late events,
a replay, a redrive, a rebuild). Real broker, real PostgreSQL, the real ``run`` process
and the real tools."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import orjson
import pytest
from user_events_devtools.devenv import free_port

from consumer.core.decode import decode, stored_payload
from consumer.core.erasure import personal_of
from consumer.core.records import Rejection
from consumer.core.rows import log_record
from consumer.edges.migrate import apply_migrations
from tests.integration.privacy import (
    SOURCE,
    Person,
    created,
    deleted,
    event,
    updated,
    where_found,
)
from tests.integration.support import (
    eventually,
    fetch,
    get,
    logged_is,
    new_settings,
    publish,
    read_all,
    scrape,
    service_env,
    start_service_process,
)
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration


def message(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (event["subject"].encode(), orjson.dumps(event), [])


async def test_a_delete_erases_every_copy_and_nothing_brings_it_back(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    env = service_env(settings)
    first = Person.new("erased")
    second = first.renamed()  # the same user after a change of email and name
    kept = Person.new("kept")
    history = [created(first, 1), updated(second, 2), deleted(first, 3)]
    await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in history])
    await publish(bootstrap_servers, settings.kafka_topic, [message(created(kept, 1))])

    service = start_service_process(settings, LOG_MAINTENANCE_INTERVAL_SECONDS="0.2")
    try:
        await eventually(lambda: logged_is(database, 4))
        erased = first.canaries + second.canaries
        assert await where_found(database, erased) == []
        # The scan finds what is there: the user who was not deleted, in users; the log
        # holds its values sealed, and its key opens them.
        assert await where_found(database, kept.canaries) == ["users.email", "users.name"]
        [kept_row] = await fetch(
            database,
            "SELECT e.payload, e.personal, u.data_key FROM user_events AS e "
            "JOIN users AS u USING (user_id) "
            "WHERE user_id = $1",
            kept.user_id,
        )
        kept_payload = json.loads(kept_row["payload"])
        assert personal_of(kept_payload, kept_row["personal"], kept_row["data_key"]) == {
            "email": kept.email,
            "name": kept.name,
        }

        # The audit trail stays: every row, every field but the personal ones.
        rows = await fetch(
            database,
            "SELECT event_id, type, sequence, kafka_partition, kafka_offset, outcome, payload "
            "FROM user_events WHERE user_id = $1 ORDER BY sequence",
            first.user_id,
        )
        assert [(r["event_id"], r["type"], r["outcome"]) for r in rows] == [
            (e["id"], e["type"], "applied") for e in history
        ]
        created_data = json.loads(rows[0]["payload"])["data"]
        assert created_data == {"email": None, "name": None}
        [erasure] = await fetch(database, "SELECT * FROM erasures")
        assert (erasure["user_id"], erasure["trigger"], erasure["event_id"]) == (
            first.user_id,
            "event",
            history[2]["id"],
        )
        assert erasure["reason"] is None
        # The key that sealed the erased user's rows went with the delete.
        [key] = await fetch(
            database, "SELECT data_key FROM users WHERE user_id = $1", first.user_id
        )
        assert key["data_key"] is None

        shown = await run_cli(["event", "--source", SOURCE, "--id", history[0]["id"]], env)
        assert shown.code == 0, shown.stderr
        assert "personal fields: erased at " in shown.stdout
        assert "by the user's user.deleted" in shown.stdout
        as_json = await run_cli(
            ["event", "--source", SOURCE, "--id", history[0]["id"], "--json"], env
        )
        erased_note = json.loads(as_json.stdout)["log"]["personal_fields_erased"]
        assert erased_note["by"] == "event" and erased_note["at"]

        # Late events of the erased user: stale, logged without personal values. An
        # update newer than the delete is dead-lettered (the Kafka topic keeps it).
        late = Person(first.user_id, *Person.new("late").canaries)
        newer = Person(first.user_id, *Person.new("newer").canaries)
        stragglers = [created(late, 2), updated(late, 1), updated(newer, 9)]
        await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in stragglers])
        await eventually(lambda: logged_is(database, 6))
        await read_all(bootstrap_servers, settings.kafka_dlq_topic)
        outcomes = await fetch(
            database,
            "SELECT outcome FROM user_events WHERE event_id = ANY($1::text[])",
            [e["id"] for e in stragglers[:2]],
        )
        assert [r["outcome"] for r in outcomes] == ["stale", "stale"]
        every = erased + late.canaries + newer.canaries
        assert await where_found(database, every) == []

        # A redrive of the user's dead letter: the live consumer dead-letters it again.
        redriven = await run_cli(["dlq", "redrive"], env)
        assert redriven.code == 0 and "redrove 1 dead letters" in redriven.stdout

        async def dead_lettered_again() -> bool:
            return len(await read_all(bootstrap_servers, settings.kafka_dlq_topic)) == 2

        await eventually(dead_lettered_again)
        assert await where_found(database, every) == []
    finally:
        service.terminate()
        assert service.wait(30) == 0

    # A rebuild from the whole log: the erased user stays erased, the other one whole.
    rebuilt = await run_cli(["rebuild", "--json"], env)
    assert rebuilt.code == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["changed"] == 0
    [user] = await fetch(database, "SELECT * FROM users WHERE user_id = $1", first.user_id)
    assert (user["status"], user["email"], user["name"]) == ("deleted", None, None)
    assert await where_found(database, every) == []
    assert "users.email" in await where_found(database, kept.canaries)

    # A replay however far back: the log's day dropped as a prune would, then the whole
    # topic again. Events no longer logged are stale against the tombstone.
    await fetch(database, "SELECT 1")
    [day] = await fetch(
        database,
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'user_events'::regclass "
        "AND c.relname = 'user_events_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')",
    )
    await fetch(database, f'DROP TABLE "{day["relname"]}"')
    await fetch(database, "SELECT user_events_add_partition((now() AT TIME ZONE 'UTC')::date)")
    replayed = await run_cli(["replay", "--from", "earliest"], env)
    assert replayed.code == 0, replayed.stderr
    assert await where_found(database, every) == []
    assert "users.email" in await where_found(database, kept.canaries)


async def test_erase_on_request_tombstones_erases_records_and_is_idempotent(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = service_env(settings)
    who = Person.new("asked")
    renamed = who.renamed()
    kept = Person.new("kept")
    history = [created(who, 1), updated(renamed, 2), created(kept, 1)]
    await publish(bootstrap_servers, settings.kafka_topic, [message(e) for e in history])
    service = start_service_process(settings, LOG_MAINTENANCE_INTERVAL_SECONDS="0.2")
    try:
        await eventually(lambda: logged_is(database, 3))
        ask = ["erase", "--user-id", who.user_id, "--reason", "ticket 4711"]

        dry = await run_cli([*ask, "--dry-run", "--json"], env)
        assert dry.code == 0, dry.stderr
        counts = json.loads(dry.stdout)
        assert (counts["log_rows"], counts["users_row"], counts["erased"]) == (2, True, False)
        # A dry run changes nothing: the users row holds the current values.
        assert await where_found(database, renamed.canaries) == ["users.email", "users.name"]

        done = await run_cli(ask, env)
        assert done.code == 0, done.stderr
        assert done.stdout.startswith(f"user {who.user_id}: erased 2 log rows, the users row")
        for text in (done.stdout, done.stderr, dry.stdout):
            assert not any(value in text for value in who.canaries)
        assert await where_found(database, who.canaries + renamed.canaries) == []
        [user] = await fetch(database, "SELECT * FROM users WHERE user_id = $1", who.user_id)
        assert (user["status"], user["email"], user["name"]) == ("deleted", None, None)
        [erasure] = await fetch(database, "SELECT * FROM erasures")
        assert (erasure["trigger"], erasure["reason"]) == ("request", "ticket 4711")

        again = await run_cli([*ask, "--json"], env)
        assert again.code == 0 and json.loads(again.stdout)["already_erased"] is True
        assert len(await fetch(database, "SELECT * FROM erasures")) == 1

        # The tombstone holds: an event published before the request is stale.
        late = Person(who.user_id, *Person.new("late").canaries)
        await publish(bootstrap_servers, settings.kafka_topic, [message(created(late, 3))])
        await eventually(lambda: logged_is(database, 4))
        assert await where_found(database, late.canaries) == []

        shown = await run_cli(["event", "--source", SOURCE, "--id", history[0]["id"]], env)
        assert "(by an erase request)" in shown.stdout, shown.stdout
    finally:
        service.terminate()
        assert service.wait(30) == 0

    # A rebuild replays the request's tombstone where it stood in history.
    rebuilt = await run_cli(["rebuild", "--json"], env)
    assert rebuilt.code == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["changed"] == 0
    assert await where_found(database, who.canaries + late.canaries) == []


async def test_erase_refuses_a_reason_that_holds_an_email_and_changes_nothing(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = service_env(settings)
    ended = await run_cli(
        ["erase", "--user-id", "u1", "--reason", "asked by someone@example.com"], env
    )
    assert ended.code == 2 and "--reason holds what looks like an email" in ended.error_line
    assert not await fetch(database, "SELECT 1 FROM pg_tables WHERE tablename = 'erasures'")


async def test_erasure_counts_and_the_logs_age_are_exported_from_the_first_scrape(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    who = Person.new("counted")
    port = free_port()
    service = start_service_process(
        settings, HTTP_PORT=str(port), LOG_MAINTENANCE_INTERVAL_SECONDS="0.2"
    )
    try:

        async def scraped() -> bool:
            status, _ = await get(port, "/metrics")
            return status == 200

        await eventually(scraped)
        first = await scrape(port)
        for trigger in ("event", "request"):
            assert ("user_events_erasures_total", (("trigger", trigger),)) in first
        assert ("user_events_log_oldest_age_seconds", ()) in first
        assert first[("user_events_log_retention_seconds", ())] == 0  # LOG_RETENTION unset

        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [message(created(who, 1)), message(deleted(who, 2))],
        )

        async def counted() -> bool:
            samples = await scrape(port)
            return samples[("user_events_erasures_total", (("trigger", "event"),))] == 1

        await eventually(counted)
        age = (await scrape(port))[("user_events_log_oldest_age_seconds", ())]
        assert 0 < age < 600
    finally:
        service.terminate()
        assert service.wait(30) == 0


async def test_the_databases_erasure_of_a_plain_row_is_the_payload_written_without_a_key(
    database: str,
) -> None:
    """Two writers of one rule: the SQL function that erases a row from before keys (its
    values in plain text), and the payload the service writes for an erased user's event.
    They must agree."""
    who = Person.new("both")
    name_only = event("user.updated", who, 3, {"name": who.name})
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        for published in (created(who, 1), updated(who, 2), name_only, deleted(who, 4)):
            decoded = decode(log_record("t", 0, 0, orjson.dumps(published).decode()), 10**6)
            assert not isinstance(decoded, Rejection)
            plain = json.loads(stored_payload(decoded))  # as rows before keys held it
            if decoded.data is not None:
                plain["data"] = {k: v for k, v in decoded.data.__dict__.items() if v is not None}
            by_sql = await conn.fetchval(
                "SELECT user_events_erased($1::jsonb)::text", json.dumps(plain)
            )
            assert json.loads(by_sql) == json.loads(stored_payload(decoded))
            holds = await conn.fetchval(
                "SELECT user_events_holds_personal($1::jsonb)", json.dumps(plain)
            )
            assert holds is (published["type"] != "user.deleted")
    finally:
        await conn.close()
