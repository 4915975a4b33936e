"""The dead-letter storm guard and the live views of it, on the real broker and PostgreSQL:
a run of poison trips it, its partition holds while the others flow, /status and the
metrics say so, and a restart with a higher limit releases it without losing a record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from user_events_devtools.devenv import free_port
from user_events_schemas import build_event, structured_record

from consumer.edges.migrate import apply_migrations
from tests.integration.support import (
    count_logged,
    eventually,
    get,
    headers_of,
    new_settings,
    publish,
    read_all,
    sample,
    scrape,
    start_service_process,
    stored_offsets,
)

POISON = (b"p", b"not json at all", [("content-type", b"application/cloudevents+json")])


def valid(user: str, n: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    event = build_event(
        "user.created",
        user,
        {"email": f"{user}@example.com", "name": user},
        source="/storm",
        event_id=f"{user}-{n}",
        time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
    )
    return structured_record(event)


async def migrated(database: str) -> None:
    """The tables, before the service makes them: the test reads them from the start."""
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


def dead_offsets(letters: list[Any], partition: int) -> list[int]:
    return sorted(
        int(headers_of(letter)["dlq.original.offset"])
        for letter in letters
        if int(headers_of(letter)["dlq.original.partition"]) == partition
    )


async def test_a_run_of_poison_holds_its_partition_until_a_restart_with_a_higher_limit(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    await migrated(database)
    topic = settings.kafka_topic
    # Partition 0: two good records, six poison ones in a row (offsets 2 to 7), two good.
    await publish(bootstrap_servers, topic, [valid("a0", 0), valid("a1", 1)], partition=0)
    await publish(bootstrap_servers, topic, [POISON] * 6, partition=0)
    await publish(bootstrap_servers, topic, [valid("a2", 2), valid("a3", 3)], partition=0)
    await publish(bootstrap_servers, topic, [valid(f"b{n}", n) for n in range(10)], partition=1)

    port = free_port()
    log_path = tmp_path / "first.log"
    with log_path.open("wb") as stderr:
        service = start_service_process(
            settings, stderr, HTTP_PORT=str(port), DLQ_MAX_CONSECUTIVE="3"
        )
    try:

        async def held() -> bool:
            offsets = await stored_offsets(database, settings.kafka_group_id)
            return offsets == {0: 5, 1: 10}

        await eventually(held, timeout=40)
        # The others flow: more records on partition 1 are applied while 0 is held.
        await publish(
            bootstrap_servers, topic, [valid(f"c{n}", 20 + n) for n in range(5)], partition=1
        )

        async def others_flow() -> bool:
            return (await stored_offsets(database, settings.kafka_group_id)) == {0: 5, 1: 15}

        await eventually(others_flow, timeout=20)
        assert await count_logged(database) == 2 + 10 + 5
        letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic)
        assert dead_offsets(letters, 0) == [2, 3, 4]  # the fourth in a row is held back

        samples = await scrape(port)
        tripped = {
            p: sample(samples, "user_events_dlq_guard_tripped", topic=topic, partition=str(p))
            for p in (0, 1)
        }
        assert tripped == {0: 1, 1: 0}
        held_lag = sample(samples, "user_events_consumer_lag_seconds", topic=topic, partition="0")
        assert held_lag is not None and held_lag > 0  # its oldest unapplied record waits
        assert sample(samples, "user_events_consumer_lag_seconds", topic=topic, partition="1") == 0

        code, body = await get(port, "/status")
        status = json.loads(body)
        assert code == 200 and status["postgresql"] == "up" and status["kafka"] == "up"
        by_partition = {row["partition"]: row for row in status["partitions"]}
        assert by_partition[0]["state"] == "held by the dead-letter guard"
        assert by_partition[0]["held_at_offset"] == 5 and by_partition[0]["paused"]
        assert (by_partition[0]["stored_offset"], by_partition[0]["lag_records"]) == (5, 5)
        assert by_partition[1]["state"] == "consuming" and by_partition[1]["lag_records"] == 0
        assert status["dlq_guard"]["max_consecutive"] == 3 and status["dlq_guard"]["held"] == 1
    finally:
        service.terminate()
        assert service.wait(30) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    trips = [line for line in lines if "storm guard tripped" in line["message"]]
    assert len(trips) == 1 and trips[0]["level"] == "ERROR"
    assert (trips[0]["partition"], trips[0]["offset"]) == (0, 5)

    # A restart with a higher limit releases it: the rest of the run is dead-lettered,
    # the good records after it applied, and nothing is lost or sent twice.
    with (tmp_path / "second.log").open("wb") as stderr:
        service = start_service_process(settings, stderr, DLQ_MAX_CONSECUTIVE="10")
    try:

        async def released() -> bool:
            offsets = await stored_offsets(database, settings.kafka_group_id)
            return offsets == {0: 10, 1: 15}

        await eventually(released, timeout=40)
    finally:
        service.terminate()
        assert service.wait(30) == 0
    assert await count_logged(database) == 4 + 10 + 5
    letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic)
    assert dead_offsets(letters, 0) == [2, 3, 4, 5, 6, 7]
    assert dead_offsets(letters, 1) == []


async def test_the_guard_left_off_dead_letters_every_poison_record(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    await migrated(database)
    await publish(bootstrap_servers, settings.kafka_topic, [POISON] * 20 + [valid("z", 1)])
    service = start_service_process(settings)
    try:

        async def done() -> bool:
            return (await stored_offsets(database, settings.kafka_group_id)) == {0: 21}

        await eventually(done, timeout=40)
    finally:
        service.terminate()
        assert service.wait(30) == 0
    letters = await read_all(bootstrap_servers, settings.kafka_dlq_topic)
    assert dead_offsets(letters, 0) == list(range(20))
