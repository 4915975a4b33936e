"""PostgreSQL through an asyncpg pool: batch writes in one transaction, and offsets.

The operator tools' statements are in ``store_redrive``, ``store_rebuild`` and
``store_lookup``, reached through ``Store.redrive_log``, ``Store.rewriting_users`` and
``Store.lookups``.

A batch is written with set-based statements (``unnest`` arrays): lock its users, read
their state, decide in Python (``plan_batch``), then insert the event-log rows, upsert
the user rows and store the next offsets, all in one transaction. A database-level
error caused by one record (an email taken by a concurrent writer, a value PostgreSQL
cannot store) rolls back to a savepoint and the batch is redone record by record, so
that only that record is rejected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime
from typing import Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.decode import AnyUserEvent
from consumer.core.dedupe import possibly_logged, rejected_unchecked
from consumer.core.erasure import erasing_deletes, sealing_keys
from consumer.core.ordering import (
    BatchPlan,
    EventKey,
    Planner,
    UserState,
    Verdict,
    claimed_emails,
    email_conflict,
)
from consumer.core.parking import (
    Parked,
    ParkingLimits,
    choose_parked,
    healing_order,
    parkable,
    sort_decided,
)
from consumer.core.records import FieldError, KafkaRecord, Outcome, Reason, Rejection
from consumer.core.rows import (
    EVENT_COLUMNS,
    USER_COLUMNS,
    event_rows,
    state_from_row,
    user_rows,
)
from consumer.core.sealing import Sealer, new_key
from consumer.edges.connect import connect
from consumer.edges.errors import OffsetsMoved
from consumer.edges.store_erasure import erase_plaintext, plaintext_through, record_erasures
from consumer.edges.store_lookup import Lookups
from consumer.edges.store_parking import (
    forget,
    park,
    parked_counts,
    read_parked,
    still_waiting,
    try_lock_users,
    waiting_for,
)
from consumer.edges.store_rebuild import UsersRewrite, rewriting_users
from consumer.edges.store_redrive import RedriveLog
from consumer.edges.store_users import (
    CREATE_STAGING,
    EMAIL_OWNERS,
    LOCK_USERS,
    UPSERT_STAGED_USERS,
    USERS,
    USERS_AND_ANY_PARKED,
)
from consumer.settings import Settings

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]

# Plan every statement for its actual arguments. A cached generic plan assumes ten
# elements per array and is chosen while the tables are small: on a fresh database
# it hash-joins the batch's keys against a sequential scan of the event log, and
# keeps doing so as the log grows until an ANALYZE replaces it (measured: a steady
# 5,000 events/s fell behind by 9 s within 30 s). Planning costs little per batch.
# A startup parameter, not a SET: the pool's RESET ALL on release would undo a SET.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
# Healing goes on while what it heals changes more users or frees more emails; each parked
# event heals once, so this only bounds a pathological chain within one transaction.
_MOST_HEALING_ROUNDS = 1000
Connection = asyncpg.Connection | PoolConnectionProxy

_LOGGED_KEYS = """
SELECT e.source, e.event_id
FROM user_events AS e
JOIN unnest($1::text[], $2::text[]) AS k(source, event_id) USING (source, event_id)
"""
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
        self, group_id: str, partitions: Sequence[TopicPartitionKey]
    ) -> dict[TopicPartitionKey, int]:
        """The next offsets stored for these partitions (absent where none were)."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            rows = await conn.fetch(
                _LOAD_OFFSETS, group_id, [t for t, _ in partitions], [p for _, p in partitions]
            )
        return _offsets_of(rows)

    async def claim_offsets(
        self, group_id: str, offsets: Mapping[TopicPartitionKey, int]
    ) -> dict[TopicPartitionKey, int]:
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
        self, group_id: str, partition: TopicPartitionKey, old: int, new: int, reason: str
    ) -> bool:
        """Move a stored offset from ``old`` to ``new`` by compare-and-set, and record it
        in ``offset_resets``, in one transaction; False if it was not at ``old``."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
            reset_at = await conn.fetchval(_RESET_OFFSET, group_id, *partition, old, new, reason)
        return reset_at is not None

    def lookups(self) -> Lookups:
        """The read-only questions of ``status`` and ``event``."""
        return Lookups(self.pool)


def _offsets_of(rows: Iterable[asyncpg.Record]) -> dict[TopicPartitionKey, int]:
    return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}


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
        offsets: Mapping[TopicPartitionKey, int],
        expected: Mapping[TopicPartitionKey, int],
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
        conn = self.conn
        subjects = {event.subject for _, event in accepted}
        await conn.execute(LOCK_USERS, sorted(subjects))
        read = await conn.fetch(USERS_AND_ANY_PARKED, list(subjects))
        any_parked: bool = read[0]["any_parked"]
        users = [row for row in read if row["user_id"] is not None]
        states = {row["user_id"]: state_from_row(row) for row in users}
        keys = {row["user_id"]: row["data_key"] for row in users}
        maybe_logged = accepted if every_key else possibly_logged(accepted, states)
        logged_keys = await self._logged([(e.source, e.id) for _, e in maybe_logged])
        emails = claimed_emails(accepted)
        owners = await conn.fetch(EMAIL_OWNERS, emails)
        email_owners = {row["email"]: row["user_id"] for row in owners}
        planner = Planner(states, logged_keys, email_owners, emails)
        plan = BatchPlan(planner.decide(accepted), planner.users)
        unchecked = [] if every_key else rejected_unchecked(plan, maybe_logged)
        if more := await self._logged(unchecked):
            planner = Planner(states, logged_keys + more, email_owners, emails)
            plan = BatchPlan(planner.decide(accepted), planner.users)
        if self._parking is not None:
            await self._park(plan)
            # What waits for the users this batch changed or parked events of (a user's
            # waiting events are decided together), or for the emails it freed. With
            # nothing parked when the batch read its users (under their locks), nothing
            # waits for them; a claim on an email the batch frees, parked meanwhile by a
            # writer of another user, is the sweep's either way (docs/parking.md).
            parked_for = {v.event.subject for v in plan.verdicts if v.result is Outcome.PARKED}
            if any_parked or parked_for:
                touched = parked_for.union(planner.users)
                await self._heal(planner, plan, keys, subjects, touched, set(planner.freed))
        await self._write(plan, keys)
        return plan

    async def heal_waiting(self, user_ids: Sequence[str]) -> BatchPlan:
        """Decide again the parked events of ``user_ids`` whose locks are free (the
        sweep's catch-up; see ``consumer.edges.store_parking``)."""
        locked = await try_lock_users(self.conn, user_ids)
        if not locked or self._parking is None:
            return BatchPlan()
        states, keys = await self._read_users(locked)
        planner = Planner(states, [], {})
        plan = BatchPlan(users=planner.users)
        await self._heal(planner, plan, keys, locked, set(locked), set())
        await self._write(plan, keys)
        return plan

    async def _read_users(
        self, user_ids: Collection[str]
    ) -> tuple[dict[str, UserState], dict[str, bytes | None]]:
        rows = await self.conn.fetch(USERS, list(user_ids))
        return (
            {row["user_id"]: state_from_row(row) for row in rows},
            {row["user_id"]: row["data_key"] for row in rows},
        )

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
            await conn.execute(CREATE_STAGING)
            await conn.copy_records_to_table(
                "users_staging",
                records=user_rows(plan.users.values(), keys_after),
                columns=USER_COLUMNS,
            )
            await conn.execute(UPSERT_STAGED_USERS)

    async def _park(self, plan: BatchPlan) -> None:
        """Park the plan's parkable rejections that the limits allow (``plan.verdicts``
        then says ``PARKED`` for them, and ``plan.parked`` holds the new ones)."""
        assert self._parking is not None
        candidates = {v.event.subject for v in plan.verdicts if parkable(v)}
        if not candidates:
            return
        counts = await parked_counts(self.conn, candidates, self._parking.rows)
        plan.verdicts, parkings = choose_parked(
            plan.verdicts, counts.per_user, counts.rows, self._parking, counts.keys
        )
        await park(self.conn, parkings)
        plan.parked.extend(
            (Verdict(p.record, p.event, Outcome.PARKED), p.rejection) for p in parkings
        )

    async def _heal(
        self,
        planner: Planner,
        plan: BatchPlan,
        keys: dict[str, bytes | None],
        locked: Collection[str],
        touched: Collection[str],
        freed: Collection[str],
    ) -> None:
        """Decide again the events parked for ``touched`` users and for users waiting for
        ``freed`` emails, each user's together; then for what those changed in turn,
        until nothing more heals. Users outside the lock set are locked without waiting;
        a busy one keeps its events for the sweep."""
        conn = self.conn
        locked = set(locked)
        for _ in range(_MOST_HEALING_ROUNDS):
            rows = await waiting_for(conn, touched, freed)
            if others := {row["user_id"] for row in rows} - locked:
                got = await try_lock_users(conn, others)
                locked |= got
                rows = [row for row in rows if row["user_id"] in locked]
                states, more_keys = await self._read_users(got)
                for user_id, key in more_keys.items():
                    keys.setdefault(user_id, key)
                planner.learn(states, [], {}, ())
            if not rows:
                return
            groups: dict[str, list[Parked]] = {}
            gone: list[EventKey] = []  # no longer decodes: dead-lettered
            for row in rows:
                read = read_parked(row)
                if isinstance(read, Parked):
                    groups.setdefault(read.event.subject, []).append(read)
                else:
                    plan.released.append(read)
                    gone.append((row["source"], row["event_id"]))
            entries = [(p.record, p.event) for group in groups.values() for p in group]
            emails = [e for e in claimed_emails(entries) if not planner.knows_email(e)]
            owners = await conn.fetch(EMAIL_OWNERS, emails) if emails else []
            planner.learn(
                {},
                await self._logged([(event.source, event.id) for _, event in entries]),
                {row["email"]: row["user_id"] for row in owners},
                emails,
            )
            freed_before = set(planner.freed)
            touched = set()
            done: list[EventKey] = list(gone)
            for user_id in sorted(groups):
                order = healing_order(groups[user_id])
                verdicts = planner.decide_group([(p.record, p.event) for p in order])
                decided = sort_decided(order, verdicts)
                plan.healed.extend((v, p.parked_at, p.rejection) for v, p in decided.healed)
                plan.released.extend((p.record, r) for p, r in decided.released)
                await still_waiting(conn, decided.waiting)
                done.extend((p.event.source, p.event.id) for p in decided.done)
                if any(v.result is Outcome.APPLIED for v, _ in decided.healed):
                    touched.add(user_id)
            await forget(conn, done)
            freed = planner.freed - freed_before
            if not touched and not freed:
                return
        log.warning("healing stopped after %d rounds; the sweep goes on", _MOST_HEALING_ROUNDS)

    async def _logged(self, keys: Sequence[EventKey]) -> list[EventKey]:
        """Those of ``keys`` that are in the event log."""
        if not keys:
            return []
        rows = await self.conn.fetch(
            _LOGGED_KEYS, [source for source, _ in keys], [event_id for _, event_id in keys]
        )
        return [(row["source"], row["event_id"]) for row in rows]

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
                    await self._park(conflict)
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
    "TopicPartitionKey",
]
