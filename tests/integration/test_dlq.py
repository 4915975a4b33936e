"""`dlq list` and `dlq redrive` on the real broker and PostgreSQL, beside the live `run`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from user_events_schemas import build_event, structured_record

from consumer.tools.clients import open_tool_store
from consumer.tools.dlq.criteria import Criteria
from consumer.tools.dlq.listing import ListRequest, list_dead_letters
from consumer.tools.dlq.redrive import RedriveRequest, redrive
from tests.integration.support import (
    eventually,
    fetch,
    headers_of,
    new_settings,
    publish,
    read_topic,
    running_service,
    users_by_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(
    kind: str, user: str, seq: int, data: dict[str, str] | None = None
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    key, value, headers = structured_record(
        build_event(
            kind, user, data, source="/tests", sequence=seq, time=T0 + timedelta(seconds=seq)
        )
    )
    return key, value, [*headers, ("trace", f"t-{user}-{seq}".encode())]


async def _state(database: str) -> dict[str, tuple[object, ...]]:
    rows = users_by_id(await fetch(database, "SELECT * FROM users"))
    return {u: (r["status"], r["email"], r["name"]) for u, r in rows.items()}


async def test_conflict_and_unknown_user_succeed_after_the_fix_and_a_redrive(
    bootstrap_servers: str, database: str
) -> None:
    # Parking off: the letters come at once (with it, after PARK_TTL; see test_parking).
    settings = await new_settings(bootstrap_servers, database, partitions=1, park_ttl=timedelta(0))
    topic = settings.kafka_topic
    async with running_service(settings):
        await publish(
            bootstrap_servers,
            topic,
            [
                ev(
                    "user.created", "u1", 1, {"email": "shared@example.com", "name": "Ada Lovelace"}
                ),
                ev("user.created", "u2", 1, {"email": "shared@example.com", "name": "Bea Bell"}),
                ev("user.updated", "u3", 2, {"name": "Cy Late"}),
            ],
        )
        dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 2)
        assert sorted(headers_of(d)["dlq.reason"] for d in dead) == [b"conflict", b"unknown_user"]

        summary = await list_dead_letters(settings, ListRequest())
        listed = summary.to_json()
        assert listed["total"] == 2
        assert listed["by_reason"] == {"conflict": 1, "unknown_user": 1}
        assert listed["by_original_topic"] == {topic: 2}
        shown = summary.render() + str(listed)
        assert "shared@" not in shown and "Bea Bell" not in shown and "Cy Late" not in shown
        assert "dlq.reason" in shown and "t-u2-1" in shown  # headers are shown (in JSON)

        store = await open_tool_store(settings)
        try:
            # Before the fix, a dry run says what would happen and changes nothing.
            dry = await redrive(settings, store, RedriveRequest(dry_run=True))
            assert sum(dry.redriven.values()) == 2
            # Fix the causes: the conflicting user is deleted, the missing create published.
            await publish(
                bootstrap_servers,
                topic,
                [
                    ev("user.deleted", "u1", 2),
                    ev("user.created", "u3", 1, {"email": "cy@example.com", "name": "Cy"}),
                ],
            )
            await eventually(lambda: _logged(database, 3))
            first = await redrive(settings, store, RedriveRequest())
            assert dict(first.redriven) == {"conflict": 1, "unknown_user": 1}
            await eventually(lambda: _logged(database, 5))
            expected = {
                "u1": ("deleted", None, None),
                "u2": ("active", "shared@example.com", "Bea Bell"),
                "u3": ("active", "cy@example.com", "Cy Late"),
            }
            assert await _state(database) == expected

            second = await redrive(settings, store, RedriveRequest())
            assert sum(second.redriven.values()) == 0 and second.already_handled == 0
        finally:
            await store.close()
        await asyncio.sleep(0.3)
    assert await _state(database) == expected
    assert await _logged(database, 5)
    redriven = await read_topic(bootstrap_servers, topic, 7, timeout=3)
    assert len(redriven) == 7  # 3 + 2 fixes + 2 redriven: the second redrive sent nothing
    copies = [headers_of(r) for r in redriven[5:]]
    assert all(h["dlq.redrive.count"] == b"1" for h in copies)
    assert all(
        not any(k.startswith("dlq.") and k != "dlq.redrive.count" for k in h) for h in copies
    )
    assert {h["trace"] for h in copies} == {b"t-u2-1", b"t-u3-2"}


async def test_redrive_filters_refuses_over_the_limit_and_keeps_its_position(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    dlq = settings.kafka_dlq_topic
    base = ev("user.updated", "ghost", 2, {"name": "N"})

    def letter(reason: str, count: int | None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        extra = [("dlq.redrive.count", str(count).encode())] if count is not None else []
        return (
            base[0],
            base[1],
            [
                *base[2],
                *extra,
                ("dlq.reason", reason.encode()),
                ("dlq.original.topic", settings.kafka_topic.encode()),
                ("dlq.failed.at", datetime.now(UTC).isoformat().encode()),
            ],
        )

    await publish(
        bootstrap_servers,
        dlq,
        [
            letter("invalid", None),
            letter("unknown_user", None),
            letter("unknown_user", 3),
            letter("unknown_user", 1),
        ],
    )
    store = await open_tool_store(settings)
    try:
        only = await redrive(
            settings, store, RedriveRequest(Criteria(reasons=frozenset({"unknown_user"})))
        )
        assert only.filtered_out == 1 and sum(only.redriven.values()) == 2
        assert [(r["offset"], r["detail"]) for r in only.refused] == [
            (2, "redriven 3 times already (limit 3)")
        ]
        rest = await redrive(settings, store, RedriveRequest())
        assert sum(rest.redriven.values()) == 1 and rest.already_handled == 3
        assert not rest.refused
        again = await redrive(settings, store, RedriveRequest())
        assert (sum(again.redriven.values()), again.already_handled, again.filtered_out) == (
            0,
            0,
            0,
        )
    finally:
        await store.close()
    positions = await fetch(database, "SELECT next_offset FROM dlq_redrive_positions")
    assert [r["next_offset"] for r in positions] == [4]
    out = await read_topic(bootstrap_servers, settings.kafka_topic, 3, timeout=3)
    assert sorted(headers_of(r)["dlq.redrive.count"] for r in out) == [b"1", b"1", b"2"]


async def _logged(database: str, n: int) -> bool:
    try:
        rows = await fetch(database, "SELECT count(*) AS n FROM user_events")
    except Exception:
        return False
    return int(rows[0]["n"]) == n
