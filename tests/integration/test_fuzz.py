"""Arbitrary records through the real `run` process, the real broker and PostgreSQL: the
service never exits, every record ends applied, dead-lettered or parked (waiting for its
user's create or its email, docs/parking.md) exactly once, and valid events published
after them are applied.

``FUZZ_EXAMPLES`` sets how many generated batches are sent (``make fuzz`` sends many).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from user_events_devtools.devenv import free_port
from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord, Rejection
from tests.integration.support import eventually, fetch, get, headers_of, new_settings, read_all
from tests.integration.support import start_service_process as start_service

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
PARTITIONS = 3
MAX_MESSAGE_BYTES = 4096
Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
header_values = st.none() | st.binary(max_size=24) | st.binary(min_size=4500, max_size=5000)
header_names = st.text(max_size=12) | st.sampled_from(
    ["content-type", "ce_specversion", "ce_id", "ce_type", "ce_time", "ce_sequence", "ce_subject"]
)
header_values = header_values | st.sampled_from(
    [b"application/cloudevents+json", b"application/json", b"1.0", b"user.created"]
)
headers = st.lists(st.tuples(header_names, header_values), max_size=4)
keys = st.none() | st.binary(max_size=16) | st.binary(min_size=4500, max_size=5000)

# Per context attribute: a hostile value for it (the valid one is the default).
HOSTILE: dict[str, Any] = {
    "specversion": st.sampled_from(["0.3", "", 1, None]),
    "id": st.sampled_from([None, 7, "", "x" * 200, ["a"]]),  # never another valid id
    "source": json_values,
    "type": st.sampled_from(["user.renamed", "", None, 3]) | st.text(max_size=12),
    "subject": json_values,
    "time": json_values
    | st.sampled_from(["2026-01-01T10:00Z", "0001-01-01T00:00:00+01:00", "2026-02-30T00:00:00Z"]),
    "sequence": json_values | st.sampled_from(["1_000", "+1", " 1", "0", str(2**63)]),
    "data": json_values
    | st.fixed_dictionaries({"email": json_values, "name": json_values})
    | st.fixed_dictionaries({"email": st.just("a@example.com"), "name": st.text(max_size=3)}),
    "extension": json_values,
}


@st.composite
def events(draw: st.DrawFn, unique_id: str) -> dict[str, Any]:
    """A valid event of a few users, some attributes replaced, removed or added."""
    kind = draw(st.sampled_from(["user.created", "user.updated", "user.deleted"]))
    user = draw(st.sampled_from(["u1", "u2", "u3"]))
    data = {"user.created": {"email": f"{user}@example.com", "name": "N"}}.get(kind, {"name": "M"})
    event = build_event(
        kind,
        user,
        None if kind == "user.deleted" else data,
        source="/fuzz",
        sequence=draw(st.integers(1, 5)),
        event_id=unique_id,
    )
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE)), max_size=2, unique=True)):
        if draw(st.booleans()):
            event[name] = draw(HOSTILE[name])
        else:
            event.pop(name, None)
    return event


@st.composite
def records(draw: st.DrawFn) -> Record:
    partition = draw(st.integers(0, PARTITIONS - 1))
    shape = draw(st.sampled_from(["bytes", "structured", "binary", "text"]))
    if shape == "bytes":
        return partition, draw(keys), draw(st.none() | st.binary(max_size=64)), draw(headers)
    event = draw(events(uuid.uuid4().hex))
    if shape == "text":  # JSON beyond json.dumps: NaN, Infinity, \u0000, huge numbers
        extra = draw(st.sampled_from(["NaN", "-Infinity", '"\\u0000"', "1e999999", '"\\ud800"']))
        text = json.dumps(event, default=str)[:-1] + f', "x": {extra}}}'
        return partition, draw(keys), text.encode(), draw(headers)
    try:
        make = structured_record if shape == "structured" else binary_record
        _, value, own = make(event)
    except (KeyError, AttributeError, TypeError, ValueError):
        return partition, None, json.dumps(event, default=str).encode(), []
    return partition, draw(keys), value, [*own, *draw(headers)]  # type: ignore[list-item]


async def publish_all(bootstrap: str, topic: str, batch: list[Record]) -> list[tuple[int, int]]:
    """Publish every record, each to its partition; where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2**20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, key=k, value=v if (k, v) != (None, None) else b"", headers=h, partition=p
            )
            for p, k, v, h in batch
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


Where = tuple[int, int]
Key = tuple[str, str]


async def ends_of(
    database: str, bootstrap: str, settings: Any
) -> tuple[dict[Where, str], dict[Key, Where], list[Where], dict[Key, Where]]:
    """Where records ended: the event log by offset (outcome) and by key, the offsets the
    dead letters name, and the parked events by key."""
    rows = await fetch(
        database,
        "SELECT kafka_partition, kafka_offset, outcome, source, event_id FROM user_events",
    )
    logged = {(r["kafka_partition"], r["kafka_offset"]): r["outcome"] for r in rows}
    keys = {(r["source"], r["event_id"]): (r["kafka_partition"], r["kafka_offset"]) for r in rows}
    dead = [
        (int(headers_of(d)["dlq.original.partition"]), int(headers_of(d)["dlq.original.offset"]))
        for d in await read_all(bootstrap, settings.kafka_dlq_topic)
    ]
    waiting = await fetch(
        database, "SELECT source, event_id, kafka_partition, kafka_offset FROM parked_events"
    )
    parked = {
        (r["source"], r["event_id"]): (r["kafka_partition"], r["kafka_offset"]) for r in waiting
    }
    return logged, keys, dead, parked


def event_key(record: Record, where: tuple[int, int]) -> tuple[str, str] | None:
    """The idempotency key of a record that is a valid event, read by the service's own
    decoder: a second event with a key already logged is a duplicate, which ends neither
    in the log nor in the dead-letter topic (binary mode turns hostile ids such as 7 or
    ['a'] into valid strings, which later batches repeat)."""
    _, key, value, headers = record
    decoded = decode(KafkaRecord("t", *where, 0, key, value, tuple(headers)), MAX_MESSAGE_BYTES)
    return None if isinstance(decoded, Rejection) else (decoded.source, decoded.id)


async def check_batch(bootstrap: str, database: str, settings: Any, batch: list[Record]) -> None:
    sentinels: list[Record] = []
    for partition in range(PARTITIONS):
        event = build_event(
            "user.created",
            f"s-{uuid.uuid4().hex}",
            {"email": f"{uuid.uuid4().hex}@example.com", "name": "S"},
            source="/sentinel",
        )
        key, value, own = structured_record(event)
        sentinels.append((partition, key, value, own))  # type: ignore[arg-type]
    records = [*batch, *sentinels]
    published = await publish_all(bootstrap, settings.kafka_topic, records)
    keys_of = {where: event_key(r, where) for r, where in zip(records, published, strict=True)}
    deadline = time.monotonic() + 60
    while True:
        logged, logged_keys, dead, parked = await ends_of(database, bootstrap, settings)
        # A duplicate: a valid event whose key is logged from another offset. Parked: a
        # valid event that waits (its key parked, from its offset or a copy's).
        duplicates = {
            where
            for where, key in keys_of.items()
            if key is not None and logged_keys.get(key, where) != where
        }
        waiting = {where for where, key in keys_of.items() if key is not None and key in parked}
        if all(w in logged or w in dead or w in duplicates or w in waiting for w in published):
            break
        assert time.monotonic() < deadline, "records neither applied nor dead-lettered in time"
        await asyncio.sleep(0.3)
    assert len(dead) == len(set(dead)), "a record was dead-lettered twice"
    assert not set(logged) & set(dead), "a record was both applied and dead-lettered"
    assert not set(parked.values()) & (set(logged) | set(dead)), "a parked record also ended"
    for where in published[-PARTITIONS:]:
        assert logged.get(where) == "applied", "a valid event after the batch was not applied"


async def ready(port: int) -> bool:
    return (await get(port, "/readyz"))[0] == 200


def test_arbitrary_records_end_applied_or_dead_lettered_exactly_once(
    bootstrap_servers: str, database: str
) -> None:
    settings = asyncio.run(
        new_settings(
            bootstrap_servers,
            database,
            partitions=PARTITIONS,
            max_message_bytes=MAX_MESSAGE_BYTES,
        )
    )
    port = free_port()
    service = start_service(settings, MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES), HTTP_PORT=str(port))
    asyncio.run(eventually(lambda: ready(port), timeout=60))

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(records(), min_size=1, max_size=20))
    def every_record_ends_once(batch: list[Record]) -> None:
        asyncio.run(check_batch(bootstrap_servers, database, settings, batch))
        assert service.poll() is None, "the service exited"

    try:
        every_record_ends_once()
    finally:
        service.terminate()
        assert service.wait(30) == 0
