"""The read-only questions of ``status`` and ``event``: where the group's offsets stand in
PostgreSQL, what waits in ``parked_events``, and what the event log and the parked events
hold about one event. Nothing here writes, and nothing here reads personal data: no
payload, no parked record's key, value or headers, no ``waits_for_email``."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg
import orjson

from consumer.core.erasure import was_erased

_GROUP_OFFSETS = """
SELECT partition, next_offset, updated_at FROM consumer_offsets
WHERE group_id = $1 AND topic = $2
"""
# With its user's key (to tell whether its personal values can still be read) and the
# erasure that reached them, if any: the first of its user's at or after the row was
# recorded, else (a row written without them, its user erased already) the last before.
_LOGGED_EVENT = """
SELECT e.source, e.event_id, e.user_id, e.type, e.time, e.sequence, e.kafka_topic,
       e.kafka_partition, e.kafka_offset, e.outcome, e.recorded_at,
       e.payload::text AS payload, e.personal, u.data_key, x.erased_at, x.trigger, e.parked_at
FROM user_events AS e
LEFT JOIN users AS u USING (user_id)
LEFT JOIN LATERAL (
    SELECT erased_at, trigger FROM erasures
    WHERE user_id = e.user_id
    ORDER BY erased_at >= e.recorded_at DESC,
             CASE WHEN erased_at >= e.recorded_at THEN erased_at END,
             erased_at DESC
    LIMIT 1
) AS x ON true
WHERE e.source = $1 AND e.event_id = $2
ORDER BY e.recorded_at DESC
LIMIT 1
"""
# A parked event without its record (personal data) or the email it waits for: for a
# conflict, the active user holding that email now, if any (the unique index on
# lower(email) of active users answers it).
_PARKED_EVENT = """
SELECT p.source, p.event_id, p.user_id, p.reason, p.kafka_topic, p.kafka_partition,
       p.kafka_offset, p.parked_at, now() AS checked_at,
       (SELECT u.user_id FROM users AS u
        WHERE p.reason = 'conflict' AND u.status = 'active'
          AND lower(u.email) = p.waits_for_email AND u.user_id <> p.user_id
        LIMIT 1) AS email_held_by
FROM parked_events AS p
WHERE p.source = $1 AND p.event_id = $2
"""
_PARKED_BY_REASON = """
SELECT reason, count(*) AS n, min(parked_at) AS oldest FROM parked_events GROUP BY reason
"""


class StoredOffset(NamedTuple):
    """A ``consumer_offsets`` row: the next offset to apply, and when it last moved."""

    partition: int
    next_offset: int
    updated_at: datetime


class LoggedEvent(NamedTuple):
    """A ``user_events`` row without its payload (which may hold personal data)."""

    source: str
    event_id: str
    user_id: str
    type: str
    time: datetime
    sequence: int | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    outcome: str
    recorded_at: datetime
    # When, and by what (``event``: a user.deleted; ``request``: ``erase``), its personal
    # fields were erased; None while it holds them, or never had any (a delete).
    erased_at: datetime | None = None
    erased_by: str | None = None
    # When it was parked, for an event applied (or found stale) when what it waited for
    # landed; None for one decided when it arrived.
    parked_at: datetime | None = None

    @property
    def healed_after_seconds(self) -> float | None:
        """How long it waited parked: from parking to being logged (None: never parked)."""
        if self.parked_at is None:
            return None
        return max(0.0, round((self.recorded_at - self.parked_at).total_seconds(), 3))


class ParkedEvent(NamedTuple):
    """A ``parked_events`` row without its record or the email it waits for."""

    source: str
    event_id: str
    user_id: str
    reason: str  # unknown_user or conflict
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    parked_at: datetime
    checked_at: datetime  # the database's now() when it was read
    # For a conflict: the active user that holds its email now (None: none does, and the
    # next sweep heals it).
    email_held_by: str | None = None

    @property
    def parked_seconds(self) -> float:
        """How long it has waited, as the database's clock says."""
        return max(0.0, round((self.checked_at - self.parked_at).total_seconds(), 3))


class ParkedSummary(NamedTuple):
    """What waits in ``parked_events``: how many per reason, and since when."""

    by_reason: dict[str, int]
    oldest: datetime | None  # None: nothing is parked
    checked_at: datetime

    @property
    def events(self) -> int:
        return sum(self.by_reason.values())

    @property
    def oldest_age_seconds(self) -> float:
        """The age of the oldest parked event (0: none)."""
        if self.oldest is None:
            return 0.0
        return max(0.0, round((self.checked_at - self.oldest).total_seconds(), 3))


class Lookups:
    """Reads for the operator tools that change nothing."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stored_offsets(self, group_id: str, topic: str) -> dict[int, StoredOffset]:
        """Per partition of ``topic``, what ``group_id`` stored (absent where nothing was)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_GROUP_OFFSETS, group_id, topic)
        return {row["partition"]: StoredOffset(*row) for row in rows}

    async def logged_event(self, source: str, event_id: str) -> LoggedEvent | None:
        """The event log's row for (source, id), if it holds one."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_LOGGED_EVENT, source, event_id)
        if row is None:
            return None
        erased = was_erased(orjson.loads(row["payload"]), row["personal"], row["data_key"])
        return LoggedEvent._make(
            [
                *tuple(row)[:11],
                row["erased_at"] if erased else None,
                row["trigger"] if erased else None,
                row["parked_at"],
            ]
        )

    async def parked_event(self, source: str, event_id: str) -> ParkedEvent | None:
        """The parked row for (source, id), if the event waits there."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_PARKED_EVENT, source, event_id)
        return None if row is None else ParkedEvent(*row)

    async def parked_summary(self) -> ParkedSummary:
        """How many events are parked, per reason, and the oldest one's parking time."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            rows = await conn.fetch(_PARKED_BY_REASON)
            now: datetime = await conn.fetchval("SELECT now()")
        oldest = min((row["oldest"] for row in rows), default=None)
        return ParkedSummary({row["reason"]: row["n"] for row in rows}, oldest, now)
