"""The event log's days: each is a partition of ``user_events``, created ahead of need and
dropped whole when retention says so, which costs the same for a thousand rows as for a
billion (no DELETE, no bloat, nothing for VACUUM). Every prune is recorded in
``log_prunes``.

A day goes only when all of it lies before the horizon: a row outlives the horizon by
less than a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
PrunedBy = Literal["schedule", "tool"]

# Days created ahead of today, so that a service idle across midnight, or a clock a
# little ahead of the database's, never meets a day without its partition.
DAYS_AHEAD = 2
# Any constant will do, as long as every replica and tool uses the same one.
PRUNE_LOCK_KEY = 0x7573_6572_7072_756E  # "userprun"
# A prune waits this long at most for the live writers' locks, then tries again later
# rather than hold up every batch behind its own queued lock.
PRUNE_LOCK_TIMEOUT = "5s"

_DAY_NAME = re.compile(r"^user_events_(\d{8})$")
_ADD_DAYS = """
SELECT user_events_add_partition((now() AT TIME ZONE 'UTC')::date + ahead)
FROM generate_series(0, $1::integer) AS ahead
"""
_DAYS = """
SELECT c.relname AS name, c.reltuples AS estimate
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'user_events'::regclass
"""
_RECORD_PRUNE = """
INSERT INTO log_prunes (horizon, days, rows, pruned_by) VALUES ($1, $2, $3, $4)
"""
# Any prune that dropped a day: a day's row count is an estimate, and may read 0.
_PRUNES = """
SELECT max(horizon) AS horizon FROM log_prunes WHERE cardinality(days) > 0
"""
_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"


@dataclass(frozen=True, slots=True)
class LogDay:
    """One partition of the log: the UTC day its rows were recorded on."""

    day: date
    table: str
    estimate: float  # pg_class.reltuples: -1 until the table was first analysed

    @property
    def ends(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time(), UTC)


@dataclass(frozen=True, slots=True)
class Prune:
    """What a prune dropped, or would drop on a dry run."""

    horizon: datetime
    days: list[date]
    rows: int
    rows_estimated: bool
    done: bool


def days_before(days: list[LogDay], horizon: datetime) -> list[LogDay]:
    """The days that lie wholly before ``horizon``, oldest first."""
    return sorted((d for d in days if d.ends <= horizon), key=lambda d: d.day)


async def add_days_ahead(conn: Connection) -> None:
    """Today's partition and the next ``DAYS_AHEAD`` days', where missing."""
    await conn.execute(_ADD_DAYS, DAYS_AHEAD)


async def log_days(conn: Connection) -> list[LogDay]:
    """The log's partitions, oldest first."""
    days = []
    for row in await conn.fetch(_DAYS):
        if match := _DAY_NAME.match(row["name"]):
            day = datetime.strptime(match[1], "%Y%m%d").date()
            days.append(LogDay(day, row["name"], row["estimate"]))
    return sorted(days, key=lambda d: d.day)


async def prune(
    conn: Connection, horizon: datetime, pruned_by: PrunedBy, *, dry_run: bool, wait: bool
) -> Prune | None:
    """Drop the days of the log wholly before ``horizon`` and record it, in one
    transaction. Under a lock that replicas and tools share: with ``wait`` False, None
    when another holds it."""
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PRUNE_LOCK_KEY)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK_KEY):
            return None
        # Never the database's today, whatever the horizon and the caller's clock say:
        # the live writers insert there.
        today = await conn.fetchval(_TODAY)
        doomed = [d for d in days_before(await log_days(conn), horizon) if d.day < today]
        rows, estimated = 0, False
        for day in doomed:
            if day.estimate >= 0:
                rows, estimated = rows + int(day.estimate), True
            else:  # never analysed: small, or young; counting it is cheap enough
                rows += await conn.fetchval(f'SELECT count(*) FROM "{day.table}"')
        if dry_run or not doomed:
            return Prune(horizon, [d.day for d in doomed], rows, estimated, done=False)
        await conn.execute(f"SET LOCAL lock_timeout = '{PRUNE_LOCK_TIMEOUT}'")
        for day in doomed:
            await conn.execute(f'DROP TABLE "{day.table}"')
        await conn.execute(_RECORD_PRUNE, horizon, [d.day for d in doomed], rows, pruned_by)
    return Prune(horizon, [d.day for d in doomed], rows, estimated, done=True)


async def oldest_recorded(conn: Connection) -> datetime | None:
    """When the oldest row the log keeps was recorded (None when it is empty): the first
    row of its oldest non-empty day, which for an append-only table is the oldest, read
    without scanning the day."""
    for day in await log_days(conn):
        found = await conn.fetchval(f'SELECT recorded_at FROM "{day.table}" LIMIT 1')
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None


async def pruned_through(conn: Connection) -> datetime | None:
    """The latest horizon a prune that dropped rows reached; None if none ever did."""
    row = await conn.fetchrow(_PRUNES)
    return None if row is None else row["horizon"]
