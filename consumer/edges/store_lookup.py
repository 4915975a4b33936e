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


class StoredOffset(NamedTuple):
    """A ``consumer_offsets`` row: the next offset to apply, and when it last moved."""

    partition: int
    next_offset: int
    updated_at: datetime


class Lookups:
    """Reads for the operator tools that change nothing."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stored_offsets(self, group_id: str, topic: str) -> dict[int, StoredOffset]:
        """Per partition of ``topic``, what ``group_id`` stored (absent where nothing was)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_GROUP_OFFSETS, group_id, topic)
        return {row["partition"]: StoredOffset(*row) for row in rows}
