"""The read-only questions of ``status`` and ``event``: where the group's offsets stand in
PostgreSQL, and what the event log holds about one event. Nothing here writes."""

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
       e.payload::text AS payload, e.personal, u.data_key, x.erased_at, x.trigger
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
            ]
        )
