"""Parking's statements: park, find what waits for users and emails, take the locks of
other users without waiting, forget what healed, expire, count. The rules are
``consumer.core.parking``'s; every statement runs in the caller's transaction."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from user_events_schemas import is_storable

from consumer.core.decode import decode
from consumer.core.parking import (
    NOT_STORABLE,
    PARKED_COLUMNS,
    Parked,
    Parking,
    parked_record,
    parked_rejection,
    parking_row,
)
from consumer.core.records import KafkaRecord, Rejection

Connection = asyncpg.Connection | PoolConnectionProxy

_PARK = f"""
INSERT INTO parked_events ({", ".join(PARKED_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(PARKED_COLUMNS) + 1))})
ON CONFLICT (source, event_id) DO NOTHING
"""
# A parked event decided again may wait for something else now (its user was created,
# and its email is another's): what it waits for follows, when it was parked does not.
_STILL_WAITING = """
UPDATE parked_events SET reason = $3, waits_for_email = $4, error = $5, errors = $6
WHERE source = $1 AND event_id = $2
"""
# The parked rows of some users, and one more row with all of them counted (a null
# user): counting stops at the limit, past which the answer is the same.
_PARKED_OF_USERS_AND_ROWS_UP_TO = """
SELECT source, event_id, user_id, NULL::bigint AS rows
FROM parked_events WHERE user_id = ANY($1::text[])
UNION ALL
SELECT NULL, NULL, NULL, count(*) FROM (SELECT 1 FROM parked_events LIMIT $2) AS s
"""
# Every parked event of the users given, and of the users waiting for one of the emails
# given: a user's waiting events are decided together (``Planner.decide_group``).
_WAITING_FOR = """
SELECT * FROM parked_events
WHERE user_id = ANY($1::text[])
   OR user_id IN (SELECT user_id FROM parked_events WHERE waits_for_email = ANY($2::text[]))
"""
_FORGET = """
DELETE FROM parked_events
WHERE (source, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
# The locks of users this transaction does not hold yet, without waiting: healing reaches
# users outside its batch, and waiting there could close a circle with another writer.
# A user whose lock is busy keeps its parked events for the sweep.
_TRY_LOCK_USERS = """
SELECT u FROM (SELECT DISTINCT u FROM unnest($1::text[]) AS u ORDER BY u) AS s
WHERE pg_try_advisory_xact_lock(hashtextextended(u, 0))
"""
# What the sweep may heal: waits that look over (the user exists; no other active user
# holds the email). The sweep catches what a batch could not reach (a busy lock, two
# transactions that could not see each other, a rebuild, an erasure request).
_HEALABLE_USERS = """
SELECT DISTINCT p.user_id FROM parked_events AS p
WHERE (p.reason = 'unknown_user'
       AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = p.user_id))
   OR (p.reason = 'conflict'
       AND NOT EXISTS (SELECT 1 FROM users AS u
                       WHERE u.status = 'active' AND lower(u.email) = p.waits_for_email
                         AND u.user_id <> p.user_id))
LIMIT $1
"""
_EXPIRED = """
SELECT source, event_id, user_id FROM parked_events
WHERE parked_at < now() - $1::interval ORDER BY parked_at LIMIT $2
"""
_TAKE = """
DELETE FROM parked_events
WHERE (source, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
RETURNING *
"""
_DROP_USERS = "DELETE FROM parked_events WHERE user_id = ANY($1::text[])"
_COUNT_OF_USER = "SELECT count(*) FROM parked_events WHERE user_id = $1"
_NOW = "SELECT count(*) AS n, min(parked_at) AS oldest, now() AS now FROM parked_events"

# Parked records passed the decoder once; they are decoded again without its size limit.
_ANY_SIZE = 2**62


class ParkedCounts(NamedTuple):
    """Parked rows of some users (their keys, per user), and of all up to a limit."""

    keys: set[tuple[str, str]]
    per_user: dict[str, int]
    rows: int


async def park(conn: Connection, parkings: Sequence[Parking]) -> None:
    if parkings:
        await conn.executemany(_PARK, [parking_row(p) for p in parkings])


async def still_waiting(conn: Connection, parkings: Sequence[Parking]) -> None:
    if parkings:
        await conn.executemany(
            _STILL_WAITING,
            [
                (e, i, reason, waits, error, errors)
                for e, i, _, reason, waits, error, errors, *_ in map(parking_row, parkings)
            ],
        )


async def parked_counts(conn: Connection, user_ids: Collection[str], limit: int) -> ParkedCounts:
    """What is parked for ``user_ids``, and how many rows are parked (up to ``limit``)."""
    counts = ParkedCounts(set(), {}, 0)
    for row in await conn.fetch(_PARKED_OF_USERS_AND_ROWS_UP_TO, list(user_ids), limit):
        if (user_id := row["user_id"]) is None:
            counts = counts._replace(rows=row["rows"])
        else:
            counts.keys.add((row["source"], row["event_id"]))
            counts.per_user[user_id] = counts.per_user.get(user_id, 0) + 1
    return counts


async def waiting_for(
    conn: Connection, user_ids: Collection[str], emails: Collection[str]
) -> list[asyncpg.Record]:
    """The parked rows of ``user_ids``, and of the users waiting for one of ``emails``."""
    if not user_ids and not emails:
        return []
    return await conn.fetch(_WAITING_FOR, list(user_ids), list(emails))


def read_parked(row: asyncpg.Record) -> Parked | tuple[KafkaRecord, Rejection]:
    """A parked row decoded again; the record and why, if it no longer decodes (a decoder
    changed since it was parked): it is then dead-lettered."""
    record = parked_record(row)
    event = decode(record, _ANY_SIZE)
    if isinstance(event, Rejection):
        return record, event
    if not is_storable(event):  # parked before that was checked: it would fail its batch
        return record, NOT_STORABLE
    return Parked(record, event, parked_rejection(row), row["parked_at"])


async def try_lock_users(conn: Connection, user_ids: Iterable[str]) -> set[str]:
    rows = await conn.fetch(_TRY_LOCK_USERS, list(user_ids))
    return {row["u"] for row in rows}


async def forget(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    """Remove the parked rows of these (source, event id) keys."""
    if keys:
        await conn.execute(_FORGET, [source for source, _ in keys], [i for _, i in keys])


async def healable_users(conn: Connection, limit: int) -> list[str]:
    return [row["user_id"] for row in await conn.fetch(_HEALABLE_USERS, limit)]


async def take_expired(conn: Connection, ttl: timedelta, limit: int) -> list[asyncpg.Record]:
    """Remove and return the parked rows older than ``ttl`` (the oldest first, at most
    ``limit``) whose users' locks this transaction could take."""
    candidates = await conn.fetch(_EXPIRED, ttl, limit)
    if not candidates:
        return []
    locked = await try_lock_users(conn, {row["user_id"] for row in candidates})
    mine = [row for row in candidates if row["user_id"] in locked]
    return await conn.fetch(
        _TAKE, [row["source"] for row in mine], [row["event_id"] for row in mine]
    )


async def drop_users(conn: Connection, user_ids: Sequence[str]) -> str:
    """Forget every parked event of ``user_ids`` (an erasure request)."""
    return await conn.execute(_DROP_USERS, list(user_ids))


async def parked_of_user(conn: Connection, user_id: str) -> int:
    count: int = await conn.fetchval(_COUNT_OF_USER, user_id)
    return count


async def parked_now(conn: Connection) -> tuple[int, float]:
    """How many events are parked, and the age of the oldest in seconds (0: none)."""
    row = await conn.fetchrow(_NOW)
    assert row is not None  # an aggregate without GROUP BY: always one row
    oldest: datetime | None = row["oldest"]
    age = 0.0 if oldest is None else max(0.0, (row["now"] - oldest).total_seconds())
    return row["n"], age
