"""PostgreSQL through an asyncpg pool: batch writes in one transaction, and offsets.

The operator tools' statements are in ``store_redrive``, ``store_rebuild`` and
``store_lookup``, reached through ``Store.redrive_log``, ``Store.rewriting_users`` and
``Store.lookups``.

A batch is written in one transaction, in three phases: read (``store_read``: lock its
users, then one statement for what the plan needs), plan in Python
(``consumer.core.planning``), write with set-based statements (insert the event-log rows,
upsert the user rows); then the next offsets are stored. What waits for
something another partition brings is parked, and what it heals is applied, in the same
transaction (``store_healing``). A database-level
error caused by one record (an email taken by a concurrent writer, a value PostgreSQL
cannot store) rolls back to a savepoint and the batch is redone record by record, so
that only that record is rejected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime
from typing import Literal

import asyncpg
from aiokafka import TopicPartition
from asyncpg.pool import PoolConnectionProxy

from consumer.core.batchplan import BatchPlan, Planner, Verdict, claimed_emails, email_conflict
from consumer.core.decode import AnyUserEvent
from consumer.core.erasure import erasing_deletes, sealing_keys
from consumer.core.parking import (
    ParkingLimits,
)
from consumer.core.planning import plan_read, unchecked_keys
from consumer.core.projection import EventKey
from consumer.core.records import FieldError, KafkaRecord, Outcome, Reason, Rejection
from consumer.core.rows import (
    EVENT_COLUMNS,
    event_rows,
    user_rows,
)
from consumer.core.sealing import Sealer, new_key
from consumer.edges.connect import connect
from consumer.edges.errors import OffsetsMoved
from consumer.edges.store_erasure import erase_plaintext, plaintext_through, record_erasures
from consumer.edges.store_healing import heal, park_parkable
from consumer.edges.store_lookup import Lookups
from consumer.edges.store_parking import (
    try_lock_users,
)
from consumer.edges.store_read import read_snapshot
from consumer.edges.store_rebuild import UsersRewrite, rewriting_users
from consumer.edges.store_redrive import RedriveLog
from consumer.edges.store_users import (
    EMAIL_OWNERS,
    logged_keys,
    read_users,
    upsert_users,
)
from consumer.settings import Settings

log = logging.getLogger(__name__)

# Plan every statement for its actual arguments. A cached generic plan assumes ten
# elements per array and is chosen while the tables are small: on a fresh database
# it hash-joins the batch's keys against a sequential scan of the event log, and
# keeps doing so as the log grows until an ANALYZE replaces it (measured: a steady
# 5,000 events/s fell behind by 9 s within 30 s). Planning costs little per batch.
# A startup parameter, not a SET: the pool's RESET ALL on release would undo a SET.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}

Connection = asyncpg.Connection | PoolConnectionProxy

# Offsets move only from where the batch started (a compare-and-set), in the batch's
# own transaction: of two members writing the same records (one of them evicted from
# the group while its batch was still being written), only the first commits. Every
# partition has its row before any batch of it is written (``claim_offsets``), so a
# batch with no row to compare against is refused too.
_SAVE_OFFSETS = """
WITH batch AS (
    SELECT * FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[])
        AS b(topic, partition, expected, next_offset)
), moved AS (
    UPDATE consumer_offsets AS o SET next_offset = b.next_offset, updated_at = now()
    FROM batch AS b
    WHERE o.group_id = $1 AND o.topic = b.topic AND o.partition = b.partition
      AND o.next_offset = b.expected
    RETURNING o.topic, o.partition
)
SELECT b.topic, b.partition FROM batch AS b
WHERE (b.topic, b.partition) NOT IN (SELECT * FROM moved)
"""
_CLAIM_OFFSETS = """
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
SELECT $1, c.topic, c.partition, c.next_offset
FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS c(topic, partition, next_offset)
ON CONFLICT DO NOTHING
"""
_RESET_OFFSET = """
WITH moved AS (
    UPDATE consumer_offsets SET next_offset = $5, updated_at = now()
    WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $4
    RETURNING group_id, topic, partition
)
INSERT INTO offset_resets (group_id, topic, partition, old_offset, new_offset, reason)
SELECT group_id, topic, partition, $4, $5, $6 FROM moved
RETURNING reset_at
"""
_LOAD_OFFSETS = """
SELECT topic, partition, next_offset FROM consumer_offsets
WHERE group_id = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::integer[]))
"""


class Store:
    """The service's database: a pool, batch transactions and stored offsets."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self._acquire_timeout = settings.db_pool_acquire_timeout_seconds
        # Read once, at the first batch (the migrations have run by then): it never moves.
        self._plaintext_through: date | Literal[False] | None = False
        self.parking = (
            ParkingLimits(settings.park_max_per_user, settings.park_max_rows)
            if settings.parking
            else None
        )

    @classmethod
    async def open(cls, settings: Settings) -> Store:
        pool = await asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            connect=connect,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            timeout=settings.db_connect_timeout_seconds,
            command_timeout=settings.db_command_timeout_seconds,
            server_settings=SERVER_SETTINGS,
        )
        return cls(pool, settings)

    async def close(self, within_seconds: float = 10.0) -> None:
        """Close the pool gracefully, or terminate its connections after ``within_seconds``."""
        try:
            await asyncio.wait_for(self.pool.close(), within_seconds)
        except TimeoutError:
            self.pool.terminate()

    async def ping(self) -> None:
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[BatchWriter]:
        """One transaction: commits when the block ends normally, rolls back otherwise."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            if self._plaintext_through is False:
                self._plaintext_through = await plaintext_through(conn)
            async with conn.transaction():
                yield BatchWriter(conn, self._plaintext_through, self.parking)

    def redrive_log(self, dlq_topic: str) -> RedriveLog:
        """What ``dlq redrive`` keeps about ``dlq_topic``."""
        return RedriveLog(self.pool, dlq_topic)

    def rewriting_users(self, *, commit: bool) -> AbstractAsyncContextManager[UsersRewrite]:
        """``rebuild``'s transaction (see ``consumer.edges.store_rebuild``)."""
        return rewriting_users(self.pool, commit=commit)

    async def load_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The next offsets stored for these partitions (absent where none were)."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            rows = await conn.fetch(
                _LOAD_OFFSETS, group_id, [t for t, _ in partitions], [p for _, p in partitions]
            )
        return _offsets_of(rows)

    async def claim_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Store ``offsets`` for partitions that have none stored yet, and return what is
        stored for each (another member's claim, where it came first). From then on the
        partition's offsets move only by compare-and-set (``save_offsets``)."""
        keys = list(offsets)
        topics, partitions = [t for t, _ in keys], [p for _, p in keys]
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
            await conn.execute(
                _CLAIM_OFFSETS, group_id, topics, partitions, [offsets[k] for k in keys]
            )
            rows = await conn.fetch(_LOAD_OFFSETS, group_id, topics, partitions)
        return _offsets_of(rows)

    async def reset_offset(
        self, group_id: str, partition: TopicPartition, old: int, new: int, reason: str
    ) -> bool:
        """Move a stored offset from ``old`` to ``new`` by compare-and-set, and record it
        in ``offset_resets``, in one transaction; False if it was not at ``old``."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            reset_at = await conn.fetchval(_RESET_OFFSET, group_id, *partition, old, new, reason)
        return reset_at is not None

    def lookups(self) -> Lookups:
        """The read-only questions of ``status`` and ``event``."""
        return Lookups(self.pool)


def _offsets_of(rows: Iterable[asyncpg.Record]) -> dict[TopicPartition, int]:
    return {TopicPartition(row["topic"], row["partition"]): row["next_offset"] for row in rows}


class BatchWriter:
    """Writes inside one batch transaction."""

    def __init__(
        self,
        conn: Connection,
        plaintext_through: date | None = None,
        parking: ParkingLimits | None = None,
    ) -> None:
        self.conn = conn
        self._plaintext_through = plaintext_through
        self._parking = parking  # None: rejections are dead-lettered at once

    async def apply(self, accepted: Sequence[tuple[KafkaRecord, AnyUserEvent]]) -> BatchPlan:
        """Apply valid events; returns each record's verdict, poison ones included."""
        if not accepted:
            return BatchPlan()
        try:
            async with self.conn.transaction():
                return await self._apply(accepted)
        except (asyncpg.UniqueViolationError, asyncpg.DataError, OverflowError) as exc:
            log.info(
                "batch hit a record-level database error; redoing it record by record",
                extra={"error": type(exc).__name__, "records": len(accepted)},
            )
            return await self._apply_one_by_one(accepted)

    async def save_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int],
        expected: Mapping[TopicPartition, int],
    ) -> None:
        """Store ``offsets`` where the stored ones still equal ``expected``; raises
        ``OffsetsMoved`` otherwise (none stored included), so the transaction rolls back."""
        if offsets:
            keys = list(offsets)
            stale = await self.conn.fetch(
                _SAVE_OFFSETS,
                group_id,
                [t for t, _ in keys],
                [p for _, p in keys],
                [expected[k] for k in keys],
                [offsets[k] for k in keys],
            )
            if stale:
                raise OffsetsMoved([(row["topic"], row["partition"]) for row in stale])

    async def _apply(
        self, accepted: Sequence[tuple[KafkaRecord, AnyUserEvent]], every_key: bool = False
    ) -> BatchPlan:
        """Read (``read_snapshot``), plan (``plan_read``), write (``_write``)."""
        conn = self.conn
        snapshot = await read_snapshot(conn, accepted, every_key)
        plan, planner = plan_read(accepted, snapshot)
        # The one read a plan can ask for: a rejected event's key that was not looked up
        # may be logged (``rejected_unchecked``). Rare: then once more, knowing it.
        if unchecked := unchecked_keys(plan, snapshot):
            snapshot = snapshot.knowing_logged(unchecked, await logged_keys(conn, unchecked))
            plan, planner = plan_read(accepted, snapshot)
        keys = dict(snapshot.data_keys)  # healing adds the keys of the users it reaches
        if self._parking is not None:
            await park_parkable(conn, plan, self._parking)
            # What waits for the users this batch changed or parked events of (a user's
            # waiting events are decided together), or for the emails it freed. With
            # nothing parked when the batch read its users (under their locks), nothing
            # waits for them; a claim on an email the batch frees, parked meanwhile by a
            # writer of another user, is the sweep's either way (docs/parking.md).
            # Healing reads as it goes: what one round heals decides what the next reads.
            parked_for = {v.event.subject for v in plan.verdicts if v.result is Outcome.PARKED}
            if snapshot.any_parked or parked_for:
                touched = parked_for.union(planner.users)
                locked = {event.subject for _, event in accepted}
                await heal(conn, planner, plan, keys, locked, touched, set(planner.freed))
        await self._write(plan, keys)
        return plan

    async def heal_waiting(self, user_ids: Sequence[str]) -> BatchPlan:
        """Decide again the parked events of ``user_ids`` whose locks are free (the
        sweep's catch-up; see ``consumer.edges.store_parking``)."""
        locked = await try_lock_users(self.conn, user_ids)
        if not locked or self._parking is None:
            return BatchPlan()
        states, keys = await read_users(self.conn, locked)
        planner = Planner(states, [], {})
        plan = BatchPlan(users=planner.users)
        await heal(self.conn, planner, plan, keys, locked, set(locked), set())
        await self._write(plan, keys)
        return plan

    async def _write(self, plan: BatchPlan, keys: dict[str, bytes | None]) -> None:
        """The plan's log rows (healed events after the batch's), erasures and users rows."""
        conn = self.conn
        logged_verdicts = plan.logged
        parked_at: list[datetime | None] | None = None
        if plan.healed:
            parked_at = [None] * len(logged_verdicts) + [t for _, t, _ in plan.healed]
            logged_verdicts = [*logged_verdicts, *(v for v, _, _ in plan.healed)]
        sealed_with, keys_after = sealing_keys(logged_verdicts, keys, new_key)
        # Tables in the order ``rebuild`` locks them (user_events, erasures, users), so
        # that neither waits on the other in a circle.
        if (erasing := erasing_deletes(logged_verdicts)) and self._plaintext_through:
            # The key goes with the users row below; rows from before keys are nulled.
            await erase_plaintext(conn, list(erasing), self._plaintext_through)
        if logged_verdicts:
            # Under the users' locks, no other writer adds these keys; one this plan did
            # not look up and is logged after all hits the primary key, and the batch
            # is redone record by record (see ``possibly_logged``).
            sealer = Sealer(len(logged_verdicts))
            await conn.copy_records_to_table(
                "user_events",
                records=event_rows(logged_verdicts, sealed_with, sealer, parked_at),
                columns=EVENT_COLUMNS,
            )
        if erasing:
            await record_erasures(conn, "event", {u: v.event for u, v in erasing.items()})
        if plan.users:
            await upsert_users(conn, user_rows(plan.users.values(), keys_after))

    async def _apply_one_by_one(
        self, accepted: Sequence[tuple[KafkaRecord, AnyUserEvent]]
    ) -> BatchPlan:
        merged = BatchPlan()
        for record, event in accepted:
            try:
                async with self.conn.transaction():
                    single = await self._apply([(record, event)], every_key=True)
            except asyncpg.UniqueViolationError:
                # The email was taken by a writer this batch could not see: a business
                # outcome for this record, not a failure of the batch. That writer has
                # committed (the index waited for it), so this transaction sees the holder.
                holder = await self._email_holder(record, event)
                conflict = BatchPlan([Verdict(record, event, email_conflict(holder))])
                if self._parking is not None:
                    await park_parkable(self.conn, conflict, self._parking)
                merged.merge(conflict)
                continue
            except (asyncpg.DataError, OverflowError) as exc:
                # OverflowError: asyncpg's COPY encoders raise it, not a DataError, for a
                # value outside the column type's range (a time past year 9999 in UTC).
                merged.verdicts.append(
                    Verdict(
                        record,
                        event,
                        Rejection(
                            Reason.INVALID,
                            f"not storable: {type(exc).__name__}",
                            errors=(FieldError("", "not_storable"),),
                        ),
                    )
                )
                continue
            merged.merge(single)
        return merged

    async def _email_holder(self, record: KafkaRecord, event: AnyUserEvent) -> str | None:
        """The other active user holding the email ``event`` claims, if any."""
        emails = claimed_emails([(record, event)])
        if not emails:
            return None
        rows = await self.conn.fetch(EMAIL_OWNERS, emails)
        return next((row["user_id"] for row in rows if row["user_id"] != event.subject), None)


__all__ = [
    "BatchWriter",
    "EventKey",
    "Outcome",
    "Store",
]
