"""The statements that read, lock and write ``users`` rows: the batch path's, healing's
and the ``erase`` tool's, written once; and which event keys the log holds."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.projection import EventKey, UserState
from consumer.core.rows import USER_COLUMNS, state_from_row

Connection = asyncpg.Connection | PoolConnectionProxy

# Advisory locks per user serialise writers of the same user (a replay beside the live
# consumer, two owners during a rebalance, an erasure request), taken in key order so
# they cannot deadlock.
LOCK_USERS = """
SELECT pg_advisory_xact_lock(k)
FROM (SELECT DISTINCT hashtextextended(u, 0) AS k FROM unnest($1::text[]) AS u ORDER BY k) AS s
"""
# Every statement that names the users columns takes them from USER_COLUMNS, the order
# of ``user_rows``: a column added there reaches each of them.
_COLUMN_LIST = ", ".join(USER_COLUMNS)
_UPDATE_ALL = ", ".join(f"{c} = EXCLUDED.{c}" for c in USER_COLUMNS if c != "user_id")
USERS = f"SELECT {_COLUMN_LIST} FROM users WHERE user_id = ANY($1::text[])"


def from_holders(emails: str) -> str:
    """A FROM clause: the active users holding one of the lower-cased emails in the text
    array of the parameter ``emails`` (``$1``...)."""
    return f"FROM users WHERE status = 'active' AND lower(email) = ANY({emails}::text[])"


EMAIL_OWNERS = f"SELECT lower(email) AS email, user_id {from_holders('$1')}"
# Rows reach users through a per-connection staging table filled by COPY (the fast path
# into PostgreSQL), then one set-based upsert that empties it as it goes.
CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS users_staging
    (LIKE users INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
UPSERT_STAGED_USERS = f"""
WITH staged AS (DELETE FROM users_staging RETURNING *)
INSERT INTO users ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM staged
ON CONFLICT (user_id) DO UPDATE SET {_UPDATE_ALL}
"""
# One row, without staging: an erasure request writes a single tombstone.
UPSERT_USER = f"""
INSERT INTO users ({_COLUMN_LIST})
VALUES ({", ".join(f"${i}" for i in range(1, len(USER_COLUMNS) + 1))})
ON CONFLICT (user_id) DO UPDATE SET {_UPDATE_ALL}
"""


def from_logged(sources: str, event_ids: str) -> str:
    """A FROM clause: the event-log rows (``e``) whose keys are in the text arrays of
    the parameters ``sources`` and ``event_ids`` (``$1``...)."""
    return f"""
FROM user_events AS e
JOIN unnest({sources}::text[], {event_ids}::text[]) AS k(source, event_id) USING (source, event_id)
"""


_LOGGED_KEYS = f"SELECT e.source, e.event_id {from_logged('$1', '$2')}"


async def read_users(
    conn: Connection, user_ids: Collection[str]
) -> tuple[dict[str, UserState], dict[str, bytes | None]]:
    """The states of those of ``user_ids`` that have a row, and each one's key."""
    rows = await conn.fetch(USERS, list(user_ids))
    return (
        {row["user_id"]: state_from_row(row) for row in rows},
        {row["user_id"]: row["data_key"] for row in rows},
    )


async def upsert_users(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Write ``rows`` (``user_rows``', one per user) over what ``users`` holds: COPY into
    the staging table, then the upsert. Inside a transaction: outside one, the staging
    table would empty as each statement commits."""
    await conn.execute(CREATE_STAGING)
    await conn.copy_records_to_table("users_staging", records=rows, columns=USER_COLUMNS)
    await conn.execute(UPSERT_STAGED_USERS)


async def logged_keys(conn: Connection, keys: Sequence[EventKey]) -> list[EventKey]:
    """Those of ``keys`` that are in the event log."""
    if not keys:
        return []
    rows = await conn.fetch(
        _LOGGED_KEYS, [source for source, _ in keys], [event_id for _, event_id in keys]
    )
    return [(row["source"], row["event_id"]) for row in rows]
