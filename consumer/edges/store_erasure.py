"""Erasure's statements: null a user's personal values in the event log, record the
erasure, and the ``erase`` tool's transaction. The rules are ``consumer.core.erasure``'s.

Every statement runs inside the caller's transaction: a delete's erasure in its batch's,
a request's in the tool's, so that the tombstone, the erased log rows and the record of
the erasure commit together or not at all.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.decode import AnyUserEvent
from consumer.core.erasure import request_tombstone
from consumer.core.ordering import Version, apply_event
from consumer.core.rows import state_from_row, user_rows, version_json
from consumer.edges.store_users import LOCK_USERS, UPSERT_USER, USERS

Connection = asyncpg.Connection | PoolConnectionProxy

_ERASE_LOGGED = """
UPDATE user_events SET payload = user_events_erased(payload)
WHERE user_id = ANY($1::text[]) AND user_events_holds_personal(payload)
RETURNING user_id
"""
_COUNT_PERSONAL = """
SELECT count(*) FROM user_events
WHERE user_id = $1 AND user_events_holds_personal(payload)
"""
_RECORD_ERASURES = """
INSERT INTO erasures (user_id, trigger, event_source, event_id, reason, log_rows, version)
SELECT u, $2, s, i, $3, n, v::jsonb
FROM unnest($1::text[], $4::text[], $5::text[], $6::integer[], $7::text[]) AS e(u, s, i, n, v)
RETURNING erased_at
"""
_LAST_ERASURE = """
SELECT erased_at, trigger, event_source, event_id FROM erasures
WHERE user_id = $1 AND erased_at >= $2 ORDER BY erased_at LIMIT 1
"""
_PREVIOUS_ERASURE = """
SELECT erased_at, trigger, event_source, event_id FROM erasures
WHERE user_id = $1 ORDER BY erased_at DESC LIMIT 1
"""
_ERASURE_COUNTS = "SELECT trigger, count(*) AS n FROM erasures GROUP BY trigger"


class Erasure(NamedTuple):
    """A row of ``erasures``, without its reason: when and how a user was erased."""

    erased_at: datetime
    trigger: str
    event_source: str
    event_id: str


async def erase_logged(conn: Connection, user_ids: Sequence[str]) -> Counter[str]:
    """Null the personal values of every log row of ``user_ids``; how many rows, per user."""
    rows = await conn.fetch(_ERASE_LOGGED, list(user_ids))
    return Counter(row["user_id"] for row in rows)


async def count_personal(conn: Connection, user_id: str) -> int:
    """How many log rows of ``user_id`` still hold a personal value."""
    return int(await conn.fetchval(_COUNT_PERSONAL, user_id))


async def record_erasures(
    conn: Connection,
    trigger: str,
    deletes: Mapping[str, AnyUserEvent],
    log_rows: Mapping[str, int],
    reason: str | None = None,
) -> datetime | None:
    """One ``erasures`` row per user of ``deletes`` (the tombstone that erased it);
    returns when they were recorded."""
    users = list(deletes)
    events = [deletes[u] for u in users]
    recorded = await conn.fetch(
        _RECORD_ERASURES,
        users,
        trigger,
        reason,
        [e.source for e in events],
        [e.id for e in events],
        [log_rows.get(u, 0) for u in users],
        [version_json(Version.of(e)) for e in events],
    )
    return recorded[0]["erased_at"] if recorded else None


async def erasure_after(conn: Connection, user_id: str, since: datetime) -> Erasure | None:
    """The first erasure of ``user_id`` at or after ``since``: the one that reached a log
    row recorded then."""
    row = await conn.fetchrow(_LAST_ERASURE, user_id, since)
    return None if row is None else Erasure(*row)


async def erasure_counts(conn: Connection) -> dict[str, int]:
    """Erasures recorded so far, by trigger (``event``, ``request``)."""
    return {row["trigger"]: row["n"] for row in await conn.fetch(_ERASURE_COUNTS)}


@dataclass(frozen=True, slots=True)
class RequestErasure:
    """What ``erase`` did to one user, or would do on a dry run: counts, never values."""

    user_id: str
    users_row: bool  # the users row held an email or a name
    log_rows: int  # log rows that held a personal value
    tombstoned: bool  # a tombstone was written (the user was not deleted already)
    previous: Erasure | None  # the last erasure before this request, if any
    erased_at: datetime | None  # when this request's erasure was recorded (None: nothing to do)

    @property
    def needed(self) -> bool:
        return self.users_row or self.log_rows > 0 or self.tombstoned


async def erase_on_request(
    pool: asyncpg.Pool, user_id: str, reason: str, *, dry_run: bool
) -> RequestErasure:
    """Erase ``user_id`` as a delete would, in one transaction under the user's lock:
    its users row becomes a tombstone newer than anything it holds, its log rows lose
    their personal values, and ``erasures`` records it with ``reason``. A user already
    deleted and holding nothing is left as it is (a rerun changes nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_USERS, [user_id])
        row = await conn.fetchrow(USERS, [user_id])
        state = None if row is None else state_from_row(row)
        log_rows = await count_personal(conn, user_id)
        users_row = state is not None and (state.email is not None or state.name is not None)
        tombstoned = state is None or state.status != "deleted"
        previous = await conn.fetchrow(_PREVIOUS_ERASURE, user_id)
        outcome = RequestErasure(
            user_id,
            users_row,
            log_rows,
            tombstoned,
            None if previous is None else Erasure(*previous),
            None,
        )
        if dry_run or not outcome.needed:
            return outcome
        now = await conn.fetchval("SELECT now()")
        tombstone = request_tombstone(user_id, str(uuid.uuid4()), now, state)
        after, _ = apply_event(state, tombstone)
        assert after is not None and after.status == "deleted"  # newer than every register
        await conn.execute(UPSERT_USER, *user_rows([after])[0])
        erased = await erase_logged(conn, [user_id])
        erased_at = await record_erasures(conn, "request", {user_id: tombstone}, erased, reason)
    return dataclasses.replace(outcome, erased_at=erased_at)
