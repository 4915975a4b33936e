"""What ``dlq redrive`` keeps in PostgreSQL (migration 0002): the dead letters it handled
and, per dead-letter partition, the offset before which every one is handled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal, NamedTuple

import asyncpg

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
_POSITIONS = "SELECT partition, next_offset FROM dlq_redrive_positions WHERE dlq_topic = $1"
_HANDLED = """
SELECT d.partition, d.dlq_offset FROM dlq_redrives AS d
LEFT JOIN dlq_redrive_positions AS p USING (dlq_topic, partition)
WHERE d.dlq_topic = $1 AND d.dlq_offset >= coalesce(p.next_offset, 0)
"""
_RECORD = """
INSERT INTO dlq_redrives (dlq_topic, partition, dlq_offset, outcome, reason, target_topic,
                          redrive_count, detail)
SELECT $1, * FROM unnest($2::integer[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                         $7::integer[], $8::text[])
ON CONFLICT DO NOTHING
"""
_SAVE_POSITIONS = """
INSERT INTO dlq_redrive_positions (dlq_topic, partition, next_offset)
SELECT $1, * FROM unnest($2::integer[], $3::bigint[])
ON CONFLICT (dlq_topic, partition) DO UPDATE
SET next_offset = GREATEST(dlq_redrive_positions.next_offset, EXCLUDED.next_offset),
    updated_at = now()
"""


class HandledLetter(NamedTuple):
    """A ``dlq_redrives`` row: one dead letter redriven or refused."""

    partition: int
    offset: int
    outcome: Literal["redriven", "refused"]
    reason: str
    target_topic: str | None
    redrive_count: int
    detail: str | None


class RedriveLog:
    """The redrive state of one dead-letter topic."""

    def __init__(self, pool: asyncpg.Pool, topic: str) -> None:
        self._pool = pool
        self.topic = topic

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """Hold the topic's redrive lock for the block; yields False, holding nothing,
        when another redrive of the topic holds it."""
        key = "user-events-consumer dlq redrive " + self.topic
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(_TRY_LOCK, key):
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute(_UNLOCK, key)

    async def positions(self) -> dict[int, int]:
        """Per partition, the offset before which every dead letter is handled."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_POSITIONS, self.topic)
        return {row["partition"]: row["next_offset"] for row in rows}

    async def handled(self) -> set[tuple[int, int]]:
        """(partition, offset) of the dead letters handled at or after the positions."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_HANDLED, self.topic)
        return {(row["partition"], row["dlq_offset"]) for row in rows}

    async def record(self, letters: Sequence[HandledLetter], positions: Mapping[int, int]) -> None:
        """Add ``letters`` and move the positions forward (never back), in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            if letters:
                columns = [list(column) for column in zip(*letters, strict=True)]
                await conn.execute(_RECORD, self.topic, *columns)
            if positions:
                await conn.execute(
                    _SAVE_POSITIONS, self.topic, list(positions), list(positions.values())
                )
