"""What ``dlq redrive`` keeps in PostgreSQL (migrations 0002 and 0003): the dead letters it
handled and, per dead-letter partition, the offset before which every one is handled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal, NamedTuple

import asyncpg

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
_POSITIONS = "SELECT partition, next_offset FROM dlq_redrive_positions WHERE dlq_topic = $1"
# The rows at or after the positions, and the refusals at the redrive limit wherever
# they are: a run with a higher limit redrives those.
_HANDLED = """
SELECT d.partition, d.dlq_offset, d.outcome, d.refused_at_limit, d.redrive_count
FROM dlq_redrives AS d
LEFT JOIN dlq_redrive_positions AS p USING (dlq_topic, partition)
WHERE d.dlq_topic = $1 AND (d.dlq_offset >= coalesce(p.next_offset, 0) OR d.refused_at_limit)
"""
# A refusal's row gives way to what a later run did with its dead letter; a redriven
# one never does, so no dead letter is redriven twice.
_RECORD = """
INSERT INTO dlq_redrives AS d (dlq_topic, partition, dlq_offset, outcome, reason,
                               target_topic, redrive_count, detail, refused_at_limit)
SELECT $1, * FROM unnest($2::integer[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                         $7::integer[], $8::text[], $9::boolean[])
ON CONFLICT (dlq_topic, partition, dlq_offset) DO UPDATE
SET outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, target_topic = EXCLUDED.target_topic,
    redrive_count = EXCLUDED.redrive_count, detail = EXCLUDED.detail,
    refused_at_limit = EXCLUDED.refused_at_limit, handled_at = now()
WHERE d.outcome = 'refused'
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
    refused_at_limit: bool = False


class HandledRow(NamedTuple):
    """What ``RedriveLog.handled`` reads back of a ``dlq_redrives`` row."""

    partition: int
    offset: int
    outcome: str
    refused_at_limit: bool
    redrive_count: int


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

    async def handled(self) -> list[HandledRow]:
        """The dead letters handled at or after the positions, and the ones refused at the
        redrive limit before them."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_HANDLED, self.topic)
        return [HandledRow(*row) for row in rows]

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
