"""Records a hostile or careless publisher can send, on the real broker and PostgreSQL:
each ends applied or dead-lettered exactly once, and the partition behind it moves on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from user_events_devtools.devenv import free_port
from user_events_schemas import binary_record, structured_record

from consumer.core.erasure import personal_of
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.edges.deadletter import DeadLetterQueue
from tests import factories
from tests.integration.support import (
    Message,
    count_logged,
    eventually,
    fetch,
    get,
    headers_of,
    kafka_committed_offsets,
    logged_is,
    new_settings,
    publish,
    publish_unparseable,
    read_all,
    read_topic,
    running_service,
    sample,
    scrape,
    service_env,
    start_service_process,
    stored_offsets,
    user_history,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def created(user: str, **envelope: Any) -> dict[str, Any]:
    return factories.created(user, 1, at=T0, event_id=f"{user}-1", **envelope)


def raw(event: dict[str, Any], text: str | None = None) -> Message:
    """A structured record of ``event``, or of ``text`` when given (JSON beyond json.dumps)."""
    value = (text if text is not None else json.dumps(event)).encode()
    return event["subject"].encode(), value, [("content-type", b"application/cloudevents+json")]


async def dead_letters_by_offset(bootstrap: str, topic: str) -> dict[tuple[int, int], Any]:
    letters = await read_all(bootstrap, topic)
    by_offset: dict[tuple[int, int], Any] = {}
    for letter in letters:
        got = headers_of(letter)
        where = (int(got["dlq.original.partition"]), int(got["dlq.original.offset"]))
        assert where not in by_offset, f"dead-lettered twice: {where}"
        by_offset[where] = letter
    return by_offset


async def test_a_poison_record_with_a_null_header_value_is_dead_lettered_and_the_loop_goes_on(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    poison = (b"k", b"{not json", [("trace", None), ("binary", b"\xff\x00")])
    async with running_service(settings) as service:
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [poison, structured_record(created("after"))],  # type: ignore[list-item]
        )
        await eventually(lambda: logged_is(database, 1))
        (letter,) = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 1)
        assert not service.done()
    assert (letter.key, letter.value) == (b"k", b"{not json")
    assert list(letter.headers)[:2] == [("trace", None), ("binary", b"\xff\x00")]
    assert headers_of(letter)["dlq.reason"] == b"undecodable"


async def test_a_key_or_headers_too_large_to_dead_letter_are_dropped_and_both_partitions_move_on(
    bootstrap_servers: str, database: str
) -> None:
    """Two such records, one per partition, used to take both write slots for ever."""
    settings = await new_settings(bootstrap_servers, database, partitions=2, max_message_bytes=4096)
    huge_key = (b"k" * 40_000, b"{}", [])
    huge_headers = (b"k", b"{}", [(f"h{i}", b"x" * 1000) for i in range(40)])
    async with running_service(settings) as service:
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [huge_key, structured_record(created("after-0"))],
            partition=0,
        )
        await publish(
            bootstrap_servers,
            settings.kafka_topic,
            [huge_headers, structured_record(created("after-1"))],  # type: ignore[list-item]
            partition=1,
        )
        await eventually(lambda: logged_is(database, 2))
        letters = await dead_letters_by_offset(bootstrap_servers, settings.kafka_dlq_topic)
        assert not service.done()
    assert set(letters) == {(0, 0), (1, 0)}
    key_letter, headers_letter = letters[(0, 0)], letters[(1, 0)]
    for letter in (key_letter, headers_letter):
        got = headers_of(letter)
        assert got["dlq.reason"] == b"too_large"
        assert letter.key is None and letter.value == b""
    assert headers_of(key_letter)["dlq.dropped"] == b"value,key"
    assert headers_of(headers_letter)["dlq.dropped"] == b"value,key,headers"
    assert not any(name.startswith("h") for name, _ in headers_letter.headers)
    assert await stored_offsets(database, settings.kafka_group_id) == {0: 2, 1: 2}


async def test_a_dead_letter_the_producer_refuses_is_sent_again_with_less_of_the_record(
    bootstrap_servers: str, database: str
) -> None:
    """A producer whose limit is below what the queue was told (a broker's lower
    max.message.bytes refuses the same way): the dead letter goes without its value."""
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, max_request_size=2048)
    await producer.start()
    try:
        queue = DeadLetterQueue(producer, settings.kafka_dlq_topic, "g", max_bytes=1024 * 1024)
        small = KafkaRecord(settings.kafka_topic, 0, 7, 1, b"k", b"v", ())
        large = KafkaRecord(settings.kafka_topic, 0, 8, 1, b"k", b"v" * 4096, (("h", b"1"),))
        rejection = Rejection(Reason.INVALID, "x")
        await queue.send_all([(small, rejection), (large, rejection)])
    finally:
        await producer.stop()
    letters = await dead_letters_by_offset(bootstrap_servers, settings.kafka_dlq_topic)
    assert letters[(0, 7)].value == b"v" and "dlq.dropped" not in headers_of(letters[(0, 7)])
    assert letters[(0, 8)].value is None and letters[(0, 8)].key == b"k"
    assert headers_of(letters[(0, 8)])["dlq.dropped"] == b"value"
    assert headers_of(letters[(0, 8)])["h"] == b"1"


async def test_what_the_consumer_ignores_cannot_make_a_valid_event_unstorable(
    bootstrap_servers: str, database: str
) -> None:
    """PostgreSQL's jsonb refuses \\u0000 and numbers past its range: the event log stores
    the event as read, without the extension attributes and unknown data fields."""
    nul_extension = created("nul", traceparent2="a\u0000b")
    huge_number = created("huge")
    text = json.dumps(huge_number)[:-1] + ', "weight": 1e200000, "data2": {"x": "\\u0000"}}'
    unknown_data = created("data") | {"data": {"email": "data@example.com", "name": "D", "x": "\0"}}
    messages = [raw(nul_extension), raw(huge_number, text), raw(unknown_data)]
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages)
        await eventually(lambda: logged_is(database, 3))
    rows = await fetch(
        database,
        "SELECT e.user_id, e.outcome, e.payload, e.personal, u.data_key FROM user_events AS e "
        "JOIN users AS u USING (user_id)",
    )
    assert {r["user_id"]: r["outcome"] for r in rows} == {
        "nul": "applied",
        "huge": "applied",
        "data": "applied",
    }
    row = next(r for r in rows if r["user_id"] == "data")
    payload = json.loads(row["payload"])
    assert payload["data"] == {"email": None, "name": None}  # kept apart, sealed
    assert personal_of(payload, row["personal"], row["data_key"]) == {
        "email": "data@example.com",
        "name": "D",
    }
    assert "traceparent2" not in json.loads(rows[0]["payload"])
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic) == []


NOT_IN_THE_CONTRACT = {
    "sequence true": raw(created("u1", sequence=True)),
    "sequence 1_000": raw(created("u2", sequence="1_000")),
    "sequence 1.0": raw(created("u3", sequence=1.0)),
    "sequence with a sign": raw(created("u4", sequence="+1")),
    "time as a number": raw(created("u5", time=1_700_000_000)),
    "time without seconds": raw(created("u6", time="2026-01-01T10:00Z")),
    "time before year 1 in UTC": raw(created("u7", time="0001-01-01T00:00:00+01:00")),
    "NaN in a structured value": raw(created("u8"), json.dumps(created("u8"))[:-1] + ', "x": NaN}'),
    "NaN in a binary value": (
        b"u9",
        b'{"email": "u9@example.com", "name": "N", "x": NaN}',
        binary_record(created("u9"))[2],
    ),
    "Infinity in a binary value": (
        b"u10",
        b'{"email": "u10@example.com", "name": "N", "x": -Infinity}',
        binary_record(created("u10"))[2],
    ),
}


async def test_values_outside_the_strict_envelope_are_dead_lettered_not_coerced(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    messages = [*NOT_IN_THE_CONTRACT.values(), structured_record(created("valid", sequence="42"))]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, messages)  # type: ignore[arg-type]
        await eventually(lambda: logged_is(database, 1))
        letters = await read_topic(
            bootstrap_servers, settings.kafka_dlq_topic, len(NOT_IN_THE_CONTRACT)
        )
    reasons = {
        name: headers_of(letters[i])["dlq.reason"].decode()
        for i, name in enumerate(NOT_IN_THE_CONTRACT)
    }
    assert reasons == {
        name: "undecodable" if ("NaN" in name or "Infinity" in name) else "invalid"
        for name in NOT_IN_THE_CONTRACT
    }
    errors = [headers_of(letter)["dlq.error"].decode() for letter in letters]
    assert errors[0] == "sequence: sequence_type"
    assert errors[4] == errors[5] == "time: time_format"
    assert errors[6] == "time: time_out_of_range"
    rows = await fetch(database, "SELECT user_id, sequence FROM user_events")
    assert [tuple(r) for r in rows] == [("valid", 42)]


async def test_a_structured_event_with_a_ce_specversion_header_is_read_as_structured(
    bootstrap_servers: str, database: str
) -> None:
    """The binding decides by content-type; the SDK's structured application/json too."""
    event = created("both")
    both = (
        b"both",
        json.dumps(event).encode(),
        [
            ("content-type", b"application/cloudevents+json; charset=utf-8"),
            ("ce_specversion", b"1.0"),
        ],
    )
    sdk = (b"sdk", json.dumps(created("sdk")).encode(), [("content-type", b"application/json")])
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    async with running_service(settings):
        await publish(
            bootstrap_servers, settings.kafka_topic, [both, sdk, binary_record(created("bin"))]
        )
        await eventually(lambda: logged_is(database, 3))
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic) == []


async def test_kafka_offsets_catch_up_with_postgres_after_a_crash_with_no_new_records(
    bootstrap_servers: str, database: str
) -> None:
    """Killed between its one batch's database commit and its Kafka commit, and restarted
    with nothing more to read: Kafka's view used to stay behind for good."""
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    history = user_history(users=10, updates=1)
    await publish(
        bootstrap_servers,
        settings.kafka_topic,
        [structured_record(e) for e in history],
        partition=0,
    )
    crash = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "consumer.cli", "run"],
        timeout=120,
        capture_output=True,
        env=service_env(settings, FAILPOINT_KILL_AFTER_DB_COMMIT="1"),
    )
    assert crash.returncode == -9, crash.stderr.decode()[-2000:]
    assert await count_logged(database) == len(history)  # the one batch held them all
    stored = await stored_offsets(database, settings.kafka_group_id)
    assert stored == {0: len(history), 1: 0}

    async def kafka_offsets() -> dict[int, int | None]:
        return await kafka_committed_offsets(
            bootstrap_servers, settings.kafka_group_id, settings.kafka_topic, 2
        )

    assert (await kafka_offsets())[0] in (None, 0)  # the crash left Kafka behind
    service = start_service_process(settings)
    try:

        async def kafka_caught_up() -> bool:
            return await kafka_offsets() == stored

        await eventually(kafka_caught_up, timeout=30)
        assert service.poll() is None
    finally:
        service.terminate()
        assert service.wait(30) == 0
    assert await stored_offsets(database, settings.kafka_group_id) == stored


async def test_every_known_series_is_exported_at_zero_from_the_first_scrape(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    port = free_port()
    service = start_service_process(settings, HTTP_PORT=str(port))
    try:
        await eventually(lambda: _answers(port), timeout=30)
        samples = await scrape(port)
    finally:
        service.terminate()
        assert service.wait(30) == 0
    for operation in ("write_batch", "kafka_commit", "load_offsets", "kafka_connect"):
        assert sample(samples, "user_events_retries_total", operation=operation) == 0
    for reason in Reason:
        assert sample(samples, "user_events_dead_letters_total", reason=str(reason)) == 0
    for outcome in ("applied", "stale", "duplicate", "dead_lettered"):
        assert (
            sample(
                samples, "user_events_messages_total", topic=settings.kafka_topic, outcome=outcome
            )
            == 0
        )


async def _answers(port: int) -> bool:
    return (await get(port, "/metrics"))[0] == 200


async def test_db_up_follows_postgres_while_idle_without_readiness_probes(
    bootstrap_servers: str, database: str, server_url: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    name = database.rsplit("/", 1)[1]
    port = free_port()
    service = start_service_process(settings, HTTP_PORT=str(port))

    async def db_up_is(value: int) -> bool:
        status, _ = await get(port, "/metrics")
        return status == 200 and sample(await scrape(port), "user_events_db_up") == value

    try:
        await eventually(lambda: db_up_is(1), timeout=30)
        await _refuse_connections(server_url, name, refuse=True)
        await eventually(lambda: db_up_is(0), timeout=20)
        await _refuse_connections(server_url, name, refuse=False)
        await eventually(lambda: db_up_is(1), timeout=20)
        assert service.poll() is None
    finally:
        await _refuse_connections(server_url, name, refuse=False)
        service.terminate()
        assert service.wait(30) == 0
    assert await count_logged(database) == 0


async def _refuse_connections(server_url: str, name: str, refuse: bool) -> None:
    """The database refuses new connections (superusers too) and drops those it has."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


async def test_a_record_the_kafka_client_cannot_parse_is_dead_lettered_by_offset(
    bootstrap_servers: str, database: str
) -> None:
    """A header name that is not UTF-8 made every getmany raise, and the service exit on
    every restart. The records the client cannot reach get dead letters by offset; the
    records around them, a readable batch between two such batches, and the other
    partitions are applied."""
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    first = [structured_record(created(f"first-{i}")) for i in range(3)]
    second = [structured_record(created(f"second-{i}")) for i in range(2)]
    topic = settings.kafka_topic
    # All there before the service starts, so that it meets both batches in one read.
    await publish_unparseable(bootstrap_servers, topic, 0, first, 1)  # offsets 0-2
    await publish(bootstrap_servers, topic, [structured_record(created("between"))], 0)
    await publish_unparseable(bootstrap_servers, topic, 0, second, 0)  # offsets 4-5
    await publish(bootstrap_servers, topic, [structured_record(created("after"))], 0)
    await publish(bootstrap_servers, topic, [structured_record(created("other"))], 1)
    async with running_service(settings) as service:
        await eventually(lambda: logged_is(database, 4))
        await eventually(lambda: _stored_is(database, settings.kafka_group_id, {0: 7, 1: 1}))
        letters = await dead_letters_by_offset(bootstrap_servers, settings.kafka_dlq_topic)
        assert not service.done()
    users = {r["user_id"] for r in await fetch(database, "SELECT user_id FROM users")}
    assert users == {"first-0", "between", "after", "other"}
    # Each unparseable record and those behind it in its record batch.
    assert set(letters) == {(0, 1), (0, 2), (0, 4), (0, 5)}
    for letter in letters.values():
        got = headers_of(letter)
        assert got["dlq.reason"] == b"undecodable"
        assert b"cannot parse" in got["dlq.error"]
        assert got["dlq.dropped"] == b"value,key,headers"


async def _stored_is(database: str, group: str, expected: dict[int, int]) -> bool:
    return await stored_offsets(database, group) == expected


async def test_records_in_every_kafka_compression_are_read(
    bootstrap_servers: str, database: str
) -> None:
    """A publisher picks its compression; without the codec, aiokafka could not read a
    single batch of it, and the service stopped on every restart."""
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    compressions = ("gzip", "snappy", "lz4", "zstd")
    for compression in compressions:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, compression_type=compression
        )
        await producer.start()
        try:
            key, value, headers = structured_record(created(compression))
            await producer.send_and_wait(settings.kafka_topic, value, key=key, headers=headers)
        finally:
            await producer.stop()
    async with running_service(settings):
        await eventually(lambda: logged_is(database, len(compressions)))
    users = {r["user_id"] for r in await fetch(database, "SELECT user_id FROM users")}
    assert users == set(compressions)
