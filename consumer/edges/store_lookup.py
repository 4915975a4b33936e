"""The read-only questions of ``status`` and ``event``: where the group's offsets stand in
PostgreSQL, and what the event log holds about one event. Nothing here writes."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

_GROUP_OFFSETS = """
SELECT partition, next_offset, updated_at FROM consumer_offsets
WHERE group_id = $1 AND topic = $2
"""
_LOGGED_EVENT = """
SELECT source, event_id, user_id, type, time, sequence, kafka_topic, kafka_partition,
       kafka_offset, outcome, recorded_at
FROM user_events WHERE source = $1 AND event_id = $2
"""


class StoredOffset(NamedTuple):
    """A ``consumer_offsets`` row: the next offset to apply, and when it last moved."""

    partition: int
    next_offset: int
    updated_at: datetime


class LoggedEvent(NamedTuple):
    """A ``user_events`` row without its payload (which holds personal data)."""

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
        return None if row is None else LoggedEvent(*row)
