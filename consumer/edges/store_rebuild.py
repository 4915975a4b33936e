"""The transaction ``rebuild`` rewrites ``users`` in: the event log read back in the order
it was written, the table replaced, and nothing else writing either meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.projection import UserState
from consumer.core.records import KafkaRecord
from consumer.core.rows import USER_COLUMNS, log_record, state_from_row, user_rows
from consumer.edges.store_log import pruned_through

_USERS = f"SELECT {', '.join(USER_COLUMNS)} FROM users"
# The log, and among it, at the time each was made, the tombstones of erasure requests
# (which came from outside Kafka, so the log does not hold them) as the deletes they are.
# Within one transaction (one recorded_at), the events a batch healed were decided after
# its own (and together per user): they are read after them.
_EVENTS = """
SELECT kafka_topic, kafka_partition, kafka_offset, payload::text AS payload, personal,
       recorded_at AS at, parked_at IS NOT NULL AS healed
FROM user_events
UNION ALL
SELECT '', -1, erasure_id,
       jsonb_build_object('specversion', '1.0', 'type', 'user.deleted',
                          'source', event_source, 'id', event_id, 'subject', user_id,
                          'time', version ->> 1)::text,
       NULL, erased_at, false
FROM erasures WHERE trigger = 'request'
ORDER BY at, healed, kafka_topic, kafka_partition, kafka_offset
"""


class LoggedRow(NamedTuple):
    """A row of the log as rebuild reads it: its payload as a record, and its sealed
    personal values (None: none, or a row from before keys)."""

    record: KafkaRecord
    sealed: bytes | None
    healed: bool = False  # a parked event, applied when what it waited for landed
    at: datetime | None = None  # when its transaction wrote it


class UsersRewrite:
    """Reads and writes inside the rebuild's transaction."""

    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        self._conn = conn

    async def users(self) -> tuple[dict[str, UserState], dict[str, bytes | None]]:
        """Every user as the table holds it now, and each one's key."""
        rows = await self._conn.fetch(_USERS)
        return (
            {row["user_id"]: state_from_row(row) for row in rows},
            {row["user_id"]: row["data_key"] for row in rows},
        )

    async def pruned_through(self) -> datetime | None:
        """The latest horizon a prune dropped rows up to; None if the log is whole."""
        return await pruned_through(self._conn)

    async def parked(self) -> int:
        """Events parked now: not in the log, so not in the rebuild; they stay parked."""
        count: int = await self._conn.fetchval("SELECT count(*) FROM parked_events")
        return count

    async def logged_events(self, chunk_size: int) -> AsyncIterator[list[LoggedRow]]:
        """The event log in the order it was written, as records with their sealed
        personal values, ``chunk_size`` at a time."""
        chunk: list[LoggedRow] = []
        async for row in self._conn.cursor(_EVENTS, prefetch=chunk_size):
            record = log_record(
                row["kafka_topic"], row["kafka_partition"], row["kafka_offset"], row["payload"]
            )
            # A chunk ends before a row of the batch's own, so that the events one
            # transaction healed are folded together.
            if len(chunk) >= chunk_size and not row["healed"]:
                yield chunk
                chunk = []
            chunk.append(LoggedRow(record, row["personal"], row["healed"], row["at"]))
        if chunk:
            yield chunk

    async def replace_users(
        self, users: Iterable[UserState], keys: Mapping[str, bytes | None]
    ) -> None:
        """Make ``users`` the whole table, each with its key in ``keys``."""
        await self._conn.execute("DELETE FROM users")
        rows = user_rows(users, keys)
        if rows:
            await self._conn.copy_records_to_table("users", records=rows, columns=USER_COLUMNS)


@asynccontextmanager
async def rewriting_users(pool: asyncpg.Pool, *, commit: bool) -> AsyncIterator[UsersRewrite]:
    """One transaction that holds the log against appends (SHARE) and ``users`` against
    writers (EXCLUSIVE: readers go on, and see the old rows or the new ones, never a mix).
    It commits when the block ends normally and ``commit`` is set, else rolls back."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            # The log first, then users: the order the live path writes them in.
            # Erasures too: a request's tombstone is part of the history replayed.
            await conn.execute("LOCK TABLE user_events IN SHARE MODE")
            await conn.execute("LOCK TABLE erasures IN SHARE MODE")
            await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")
            yield UsersRewrite(conn)
        except BaseException:
            await transaction.rollback()
            raise
        if commit:
            await transaction.commit()
        else:
            await transaction.rollback()
