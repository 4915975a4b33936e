"""The property parking rests on: whatever order a history's events arrive in across
partitions, the users table ends as applying them in version order would leave it, and
every event is logged once, none lost, none doubled, none left waiting; and ``rebuild``
folds that log back into the same users. Real PostgreSQL,
through the batch writer the service uses (Kafka only decides the arrival order, which
is what the examples draw)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from user_events_schemas import build_event

from consumer.core.batchplan import plan_batch
from consumer.core.parking import ParkingLimits
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.rows import log_record
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import BatchWriter
from consumer.edges.store_rebuild import LoggedRow
from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from consumer.tools.rebuild import Projector, rebuild
from tests.factories import accepted

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USERS = 3
PARTITIONS = 3
LIMITS = ParkingLimits(per_user=100, rows=100_000)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A history in version order that applies without a rejection: each user created
    first, then updates (a rename, or an email free at that point: never used, or given
    up by its holder), maybe a delete last."""
    tag = uuid.uuid4().hex[:8]
    held: dict[str, str] = {}  # email -> user
    emails = iter(f"e{i}.{tag}@example.com" for i in range(100))
    free: list[str] = []
    alive: dict[str, str] = {}  # user -> email
    events: list[dict[str, Any]] = []

    def add(kind: str, user: str, data: dict[str, str] | None) -> None:
        seq = len(events) + 1
        events.append(
            build_event(
                kind, user, data, source="/prop", sequence=seq, time=T0 + timedelta(seconds=seq)
            )
        )

    def an_email() -> str:
        if free and draw(st.booleans()):
            email = free.pop(draw(st.integers(0, len(free) - 1)))
        else:
            email = next(emails)
        return email

    users = [f"u{i}.{tag}" for i in range(USERS)]
    for _ in range(draw(st.integers(USERS, 14))):
        user = draw(st.sampled_from(users))
        if user not in alive:
            if any(e["subject"] == user for e in events):
                continue  # deleted: its history is over
            email = an_email()
            alive[user], held[email] = email, user
            add("user.created", user, {"email": email, "name": f"n{len(events)}"})
            continue
        action = draw(st.sampled_from(["rename", "email", "email", "delete"]))
        if action == "rename":
            add("user.updated", user, {"name": f"n{len(events)}"})
        elif action == "email":
            new = an_email()
            old = alive[user]
            del held[old]
            free.append(old)
            alive[user], held[new] = new, user
            add("user.updated", user, {"email": new})
        else:
            old = alive.pop(user)
            del held[old]
            free.append(old)
            add("user.deleted", user, None)
    return events


async def apply_out_of_order(
    conn: asyncpg.Connection, batches: list[list[tuple[KafkaRecord, Any]]]
) -> list[Any]:
    """Each batch in its own transaction, as the service writes them; every verdict."""
    verdicts = []
    for batch in batches:
        async with conn.transaction():
            plan = await BatchWriter(conn, None, LIMITS).apply(batch)
        assert plan.rejected == [] and plan.released == []
        verdicts.extend(plan.verdicts)
    return verdicts


def test_any_arrival_order_ends_as_version_order(database: str) -> None:
    async def migrate() -> None:
        conn = await asyncpg.connect(database)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())

    @hypothesis_settings(
        max_examples=int(os.environ.get("PARKING_EXAMPLES", "60")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def converges(data: st.DataObject) -> None:
        history = data.draw(histories())
        # In version order, nothing is rejected: the reference.
        in_order = [accepted(e, partition=0, offset=i) for i, e in enumerate(history)]
        reference = plan_batch(in_order, {}, [], {})
        assert reference.rejected == []
        # Each event to a partition (order kept within it), the partitions interleaved,
        # the stream cut into batches.
        lanes: list[list[tuple[KafkaRecord, Any]]] = [[] for _ in range(PARTITIONS)]
        for event in history:
            lane = data.draw(st.integers(0, PARTITIONS - 1))
            lanes[lane].append(accepted(event, partition=lane, offset=len(lanes[lane])))
        # Each batch takes the next few records of some partitions, in partition order,
        # as the service's fetch hands them over.
        batches = []
        while any(lanes):
            batch = []
            for lane in lanes:
                taken = data.draw(st.integers(0, 3)) if lane else 0
                batch.extend(lane[:taken])
                del lane[:taken]
            if not batch:  # at least one record: the first partition with any
                batch.append(next(lane for lane in lanes if lane).pop(0))
            batches.append(batch)
        asyncio.run(check(database, history, batches, reference.users))

    converges()

    # And the log those arrivals left rebuilds the same users (each example's included).
    async def rebuilt() -> None:
        store = await open_tool_store(Settings(database_url=database))
        try:
            report = await rebuild(store, dry_run=True)
        finally:
            await store.close()
        assert report.diff == {"added": [], "removed": [], "changed": []}
        assert set(report.outcomes) <= {"applied", "stale"}

    asyncio.run(rebuilt())


async def check(
    database: str,
    history: list[dict[str, Any]],
    batches: list[list[tuple[KafkaRecord, Any]]],
    expected: dict[str, Any],
) -> None:
    conn = await asyncpg.connect(database)
    try:
        verdicts = await apply_out_of_order(conn, batches)
        assert not any(v.result is Outcome.DUPLICATE for v in verdicts)
        subjects = sorted({e["subject"] for e in history})
        rows = await conn.fetch(
            "SELECT user_id, status, email, name, versions FROM users "
            "WHERE user_id = ANY($1::text[])",
            subjects,
        )
        got = {r["user_id"]: (r["status"], r["email"], r["name"]) for r in rows}
        assert got == {u: (s.status, s.email, s.name) for u, s in expected.items()}
        logged = await conn.fetch(
            "SELECT event_id, count(*) AS n FROM user_events "
            "WHERE user_id = ANY($1::text[]) GROUP BY event_id",
            subjects,
        )
        assert {r["event_id"]: r["n"] for r in logged} == {e["id"]: 1 for e in history}
        # The log folds back into the same users, as ``rebuild`` reads it.
        keys = await conn.fetch(
            "SELECT user_id, data_key FROM users WHERE user_id = ANY($1::text[])", subjects
        )
        projector = Projector(keys={r["user_id"]: r["data_key"] for r in keys})
        log_rows = await conn.fetch(
            "SELECT kafka_topic, kafka_partition, kafka_offset, payload::text AS payload, personal, "
            "recorded_at, parked_at IS NOT NULL AS healed FROM user_events "
            "WHERE user_id = ANY($1::text[]) "
            "ORDER BY recorded_at, healed, kafka_topic, kafka_partition, kafka_offset",
            subjects,
        )
        projector.feed(
            [
                LoggedRow(
                    log_record(
                        r["kafka_topic"], r["kafka_partition"], r["kafka_offset"], r["payload"]
                    ),
                    r["personal"],
                    r["healed"],
                    r["recorded_at"],
                )
                for r in log_rows
            ]
        )
        folded = {u: (s.status, s.email, s.name) for u, s in projector.users.items()}
        assert folded == got
        waiting = await conn.fetchval(
            "SELECT count(*) FROM parked_events WHERE user_id = ANY($1::text[])", subjects
        )
        assert waiting == 0
    finally:
        await conn.close()


async def test_an_unstorable_event_is_not_parked_so_what_would_heal_it_applies(
    database: str,
) -> None:
    """A create whose name PostgreSQL cannot store (U+0000), claiming an email another user
    holds: parked, it would make the holder's delete fail when it healed it."""
    tag = uuid.uuid4().hex[:8]
    email = f"held.{tag}@example.com"
    holder, claimer = f"holder.{tag}", f"claimer.{tag}"

    def at(event: dict[str, Any], offset: int) -> list[tuple[KafkaRecord, Any]]:
        return [accepted(event, partition=0, offset=offset)]

    def made(kind: str, user: str, seq: int, data: dict[str, str] | None) -> dict[str, Any]:
        return build_event(
            kind, user, data, source="/nul", sequence=seq, time=T0 + timedelta(seconds=seq)
        )

    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        batches = [
            at(made("user.created", holder, 1, {"email": email, "name": "H"}), 0),
            at(made("user.created", claimer, 1, {"email": email, "name": "a\x00b"}), 1),
            at(made("user.deleted", holder, 2, None), 2),
        ]
        plans = []
        for batch in batches:
            async with conn.transaction():
                plans.append(await BatchWriter(conn, None, LIMITS).apply(batch))
        claim = plans[1].verdicts[0].result
        assert isinstance(claim, Rejection) and claim.reason.value == "conflict"  # at once
        assert [str(v.result) for v in plans[2].verdicts] == ["applied"]  # the delete
        assert await conn.fetchval("SELECT count(*) FROM parked_events") == 0
        status = await conn.fetchval("SELECT status FROM users WHERE user_id = $1", holder)
        assert status == "deleted"
    finally:
        await conn.close()
