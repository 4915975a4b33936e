"""The end-to-end pipeline on the real broker and the real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.erasure import personal_of
from tests.factories import created
from tests.integration.support import (
    count_logged,
    eventually,
    fetch,
    headers_of,
    logged_is,
    new_settings,
    publish,
    read_topic,
    running_service,
    users_by_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def updated(user: str, seq: int, **data: str) -> dict[str, object]:
    return build_event(
        "user.updated", user, data, source="/tests", sequence=seq, time=T0 + timedelta(seconds=seq)
    )


def deleted(user: str, seq: int) -> dict[str, object]:
    return build_event(
        "user.deleted", user, None, source="/tests", sequence=seq, time=T0 + timedelta(seconds=seq)
    )


async def test_events_in_both_cloudevents_modes_land_in_users_and_the_log(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    events = [created("u1", 1), updated("u1", 2, name="Ada"), created("u2", 1), deleted("u2", 2)]
    messages = [
        structured_record(events[0]),
        binary_record(events[1]),
        binary_record(events[2]),
        structured_record(events[3]),
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages)
        await eventually(lambda: logged_is(database, 4))
    users = users_by_id(await fetch(database, "SELECT * FROM users"))
    assert users["u1"]["name"] == "Ada" and users["u1"]["email"] == "u1@example.com"
    assert users["u1"]["status"] == "active"
    assert users["u2"]["status"] == "deleted" and users["u2"]["email"] is None
    log = await fetch(database, "SELECT * FROM user_events ORDER BY user_id, sequence")
    assert [(r["user_id"], r["type"], r["outcome"]) for r in log] == [
        ("u1", "user.created", "applied"),
        ("u1", "user.updated", "applied"),
        ("u2", "user.created", "applied"),
        ("u2", "user.deleted", "applied"),
    ]
    assert all(r["kafka_topic"] == settings.kafka_topic for r in log)
    # The log keeps the personal values sealed with the user's key, which opens them.
    [key] = await fetch(database, "SELECT data_key FROM users WHERE user_id = 'u1'")
    payload = json.loads(log[1]["payload"])
    assert payload["data"] == {"name": None}
    assert personal_of(payload, log[1]["personal"], key["data_key"]) == {"name": "Ada"}


async def test_a_redelivered_event_changes_nothing_and_is_logged_once(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    first = created("u1", 1)
    rename = updated("u1", 2, name="Bea")
    async with running_service(settings):
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [structured_record(first), structured_record(rename)],
            partition=0,
        )
        await eventually(lambda: logged_is(database, 2))
        # The same events again, in the other mode and on another partition.
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [binary_record(first), structured_record(rename), structured_record(first)],
            partition=1,
        )
        sentinel = created("u-sentinel", 1)
        await publish(
            bootstrap_servers, settings.kafka_topic, [structured_record(sentinel)], partition=1
        )
        await eventually(lambda: logged_is(database, 3))
    users = users_by_id(await fetch(database, "SELECT * FROM users"))
    assert users["u1"]["name"] == "Bea"
    assert await count_logged(database) == 3


async def test_out_of_order_events_are_stale_and_never_resurrect_a_deleted_user(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    messages = [
        structured_record(created("u1", 1)),
        structured_record(updated("u1", 5, name="Newest")),
        structured_record(updated("u1", 3, name="Older")),  # older than the state: stale
        structured_record(deleted("u2", 9)),  # a delete before the create: a tombstone
        structured_record(created("u2", 2)),  # older than the delete: stale
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages, partition=0)
        await eventually(lambda: logged_is(database, 5))
    users = users_by_id(await fetch(database, "SELECT * FROM users"))
    assert users["u1"]["name"] == "Newest"
    assert users["u2"]["status"] == "deleted" and users["u2"]["email"] is None
    outcomes = {
        (r["user_id"], r["sequence"]): r["outcome"]
        for r in await fetch(database, "SELECT user_id, sequence, outcome FROM user_events")
    }
    assert outcomes == {
        ("u1", 1): "applied",
        ("u1", 5): "applied",
        ("u1", 3): "stale",
        ("u2", 9): "applied",
        ("u2", 2): "stale",
    }


async def test_order_falls_back_to_time_without_a_sequence(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    make = lambda name, secs: build_event(  # noqa: E731
        "user.updated", "u1", {"name": name}, source="/tests", time=T0 + timedelta(seconds=secs)
    )
    messages = [
        structured_record(
            build_event(
                "user.created",
                "u1",
                {"email": "a@example.com", "name": "A"},
                source="/tests",
                time=T0,
            )
        ),
        structured_record(make("Late", 20)),
        structured_record(make("Early", 10)),
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages, partition=0)
        await eventually(lambda: logged_is(database, 3))
    users = users_by_id(await fetch(database, "SELECT * FROM users"))
    assert users["u1"]["name"] == "Late"


POISON_CASES = {
    "undecodable": (b"k", b"\xff\xfe not utf-8", [("trace", b"t-1")]),
    "invalid": structured_record(created("u9", 1) | {"time": "yesterday"}),
    "unknown_type": (b"u9", json.dumps(created("u9", 1) | {"type": "user.renamed"}).encode(), []),
    "unknown_user": structured_record(updated("ghost", 2, name="Nobody")),
    "too_large": (b"u9", json.dumps(created("u9", 1) | {"padding": "x" * 5000}).encode(), []),
}


async def test_each_poison_reason_ends_in_the_dead_letter_topic_with_every_header(
    bootstrap_servers: str, database: str
) -> None:
    reasons = sorted(POISON_CASES)
    settings = await new_settings(
        bootstrap_servers,
        database,
        partitions=len(reasons),
        max_message_bytes=4096,
        park_ttl=timedelta(0),
    )
    async with running_service(settings):
        # One poison record per reason, each at offset 0 of a partition of its own.
        for partition, reason in enumerate(reasons):
            await publish(
                bootstrap_servers, settings.kafka_topic, [POISON_CASES[reason]], partition=partition
            )
        dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, len(reasons))
    assert len(dead) == len(reasons)
    by_reason = {headers_of(letter)["dlq.reason"].decode(): letter for letter in dead}
    assert sorted(by_reason) == reasons
    for partition, reason in enumerate(reasons):
        key, value, headers = POISON_CASES[reason]
        letter = by_reason[reason]
        assert (letter.key, letter.value) == (key, value)
        got = headers_of(letter)
        assert list(letter.headers)[: len(headers)] == headers  # original headers first, unchanged
        assert got["dlq.original.topic"] == settings.kafka_topic.encode()
        assert got["dlq.original.partition"] == str(partition).encode()
        assert got["dlq.original.offset"] == b"0"
        assert int(got["dlq.original.timestamp"]) > 0
        assert got["dlq.consumer.group"] == settings.kafka_group_id.encode()
        assert datetime.fromisoformat(got["dlq.failed.at"].decode()).tzinfo is not None
        assert got["dlq.error"] and b"@" not in got["dlq.error"]
    assert await count_logged(database) == 0


async def test_a_record_too_large_to_dead_letter_goes_without_its_value_and_the_loop_goes_on(
    bootstrap_servers: str, database: str
) -> None:
    """Over what the dead-letter producer may send, the record would be refused on every
    retry: its dead letter keeps the provenance only, and the next record is applied."""
    settings = await new_settings(bootstrap_servers, database, max_message_bytes=1024)
    huge = json.dumps(created("u1", 1) | {"padding": "x" * 40_000}).encode()
    fine = json.dumps(created("u2", 1)).encode()
    async with running_service(settings):
        await publish(
            bootstrap_servers, settings.kafka_topic, [(b"u1", huge, []), (b"u2", fine, [])]
        )
        (letter,) = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 1)
        await eventually(lambda: logged_is(database, 1))
    got = headers_of(letter)
    assert got["dlq.reason"] == b"too_large" and got["dlq.original.offset"] == b"0"
    assert got["dlq.dropped"] == b"value"
    assert letter.key == b"u1" and letter.value is None
    assert await count_logged(database) == 1


async def test_an_email_held_by_another_active_user_is_a_conflict(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, park_ttl=timedelta(0))
    messages = [
        structured_record(created("u1", 1, email="shared@example.com")),
        structured_record(created("u2", 1, email="SHARED@example.com")),
        structured_record(created("u3", 1)),
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages, partition=0)
        dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 1)
        await eventually(lambda: logged_is(database, 2))
    assert headers_of(dead[0])["dlq.reason"] == b"conflict"
    assert b"shared" not in headers_of(dead[0])["dlq.error"]
    users = users_by_id(await fetch(database, "SELECT * FROM users"))
    assert set(users) == {"u1", "u3"}


async def test_a_poison_record_inside_a_batch_does_not_block_the_rest(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, park_ttl=timedelta(0))
    good = [structured_record(created(f"u{i}", 1)) for i in range(50)]
    batch = [
        *good[:20],
        (b"x", b"{not json", []),
        *good[20:35],
        structured_record(updated("ghost", 3, name="N")),
        *good[35:],
    ]
    await publish(bootstrap_servers, settings.kafka_topic, batch, partition=0)
    async with running_service(settings):  # the whole backlog comes as one fetch
        await eventually(lambda: logged_is(database, 50))
        dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 2)
    assert sorted(int(headers_of(d)["dlq.original.offset"]) for d in dead) == [20, 36]
    stored = await fetch(database, "SELECT partition, next_offset FROM consumer_offsets")
    assert {r["partition"]: r["next_offset"] for r in stored}[0] == 52
