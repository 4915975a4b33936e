"""Erasure's statements: null the plain personal values of rows from before keys, record
the erasure, count what a user's key can read, and the ``erase`` tool's transaction. The
rules are ``consumer.core.erasure``'s; the key goes with the users row, written by the
caller.

Every statement runs inside the caller's transaction: a delete's erasure in its batch's,
a request's in the tool's, so that the tombstone (and so the key), the erased rows and
the record of the erasure commit together or not at all.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from consumer.core.decode import AnyUserEvent
from consumer.core.erasure import personal_of, request_tombstone
from consumer.core.projection import Version, apply_event
from consumer.core.rows import state_from_row, user_rows, version_json
from consumer.edges.store_parking import drop_users, parked_of_user
from consumer.edges.store_users import LOCK_USERS, UPSERT_USER, USERS

Connection = asyncpg.Connection | PoolConnectionProxy

# Rows from before keys existed hold personal values in plain text, on the days up to
# log_plaintext.through: only those days are searched (the planner prunes the others).
_ERASE_PLAINTEXT = """
UPDATE user_events SET payload = user_events_erased(payload)
WHERE user_id = ANY($1::text[]) AND recorded_on <= $2 AND user_events_holds_personal(payload)
"""
_PLAINTEXT_THROUGH = "SELECT max(through) FROM log_plaintext"
# The rows of a user that carried personal values, and of those how many can still be read:
# sealed ones with the key the users row holds, plain ones as they are (in Python).
_CARRIED = """
SELECT payload::text AS payload, personal FROM user_events
WHERE user_id = $1 AND (payload -> 'data' ? 'email' OR payload -> 'data' ? 'name')
"""
_RECORD_ERASURES = """
INSERT INTO erasures (user_id, trigger, event_source, event_id, reason, version)
SELECT u, $2, s, i, $3, v::jsonb
FROM unnest($1::text[], $4::text[], $5::text[], $6::text[]) AS e(u, s, i, v)
RETURNING erased_at
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


async def plaintext_through(conn: Connection) -> date | None:
    """The last day of the log that may hold plain personal values (None: no such day)."""
    through: date | None = await conn.fetchval(_PLAINTEXT_THROUGH)
    return through


async def erase_plaintext(conn: Connection, user_ids: Sequence[str], through: date) -> None:
    """Null the plain personal values of the log rows of ``user_ids`` (rows sealed with a
    key need nothing: the key goes)."""
    await conn.execute(_ERASE_PLAINTEXT, list(user_ids), through)


async def readable_rows(conn: Connection, user_id: str, key: bytes | None) -> int:
    """How many log rows of ``user_id`` hold personal values ``key`` (or anyone) can read."""
    rows = await conn.fetch(_CARRIED, user_id)
    payloads = ((orjson.loads(row["payload"]), row["personal"]) for row in rows)
    return sum(1 for payload, sealed in payloads if personal_of(payload, sealed, key) is not None)


async def record_erasures(
    conn: Connection,
    trigger: str,
    deletes: Mapping[str, AnyUserEvent],
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
        [version_json(Version.of(e)) for e in events],
    )
    return recorded[0]["erased_at"] if recorded else None


async def erasure_counts(conn: Connection) -> dict[str, int]:
    """Erasures recorded so far, by trigger (``event``, ``request``)."""
    return {row["trigger"]: row["n"] for row in await conn.fetch(_ERASURE_COUNTS)}


@dataclass(frozen=True, slots=True)
class RequestErasure:
    """What ``erase`` did to one user, or would do on a dry run: counts, never values."""

    user_id: str
    users_row: bool  # the users row held an email, a name or a key
    log_rows: int  # log rows whose personal values could still be read
    parked: int  # parked events of the user (each holds the record, personal values and all)
    tombstoned: bool  # a tombstone was written (the user was not deleted already)
    previous: Erasure | None  # the last erasure before this request, if any
    erased_at: datetime | None  # when this request's erasure was recorded (None: nothing to do)

    @property
    def needed(self) -> bool:
        return self.users_row or self.log_rows > 0 or self.parked > 0 or self.tombstoned


async def erase_on_request(
    pool: asyncpg.Pool, user_id: str, reason: str, *, dry_run: bool
) -> RequestErasure:
    """Erase ``user_id`` as a delete would, in one transaction under the user's lock:
    its users row becomes a tombstone newer than anything it holds, its log rows lose
    their personal values (its key goes; plain ones are nulled), and ``erasures`` records
    it with ``reason``. A user already
    deleted and holding nothing is left as it is (a rerun changes nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_USERS, [user_id])
        row = await conn.fetchrow(USERS, [user_id])
        state = None if row is None else state_from_row(row)
        key = None if row is None else row["data_key"]
        log_rows = await readable_rows(conn, user_id, key)
        users_row = state is not None and (
            state.email is not None or state.name is not None or key is not None
        )
        tombstoned = state is None or state.status != "deleted"
        previous = await conn.fetchrow(_PREVIOUS_ERASURE, user_id)
        outcome = RequestErasure(
            user_id,
            users_row,
            log_rows,
            await parked_of_user(conn, user_id),
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
        # In the order ``rebuild`` locks the tables: user_events, erasures, users.
        if (through := await plaintext_through(conn)) is not None:
            await erase_plaintext(conn, [user_id], through)
        erased_at = await record_erasures(conn, "request", {user_id: tombstone}, reason)
        # Parked events go without being decided again: the request is to erase, and
        # dead-lettering them would make one more copy.
        await drop_users(conn, [user_id])
        await conn.execute(UPSERT_USER, *user_rows([after], {})[0])  # the key goes
    return dataclasses.replace(outcome, erased_at=erased_at)
