"""The statements that read, lock and write ``users`` rows: the batch path's and the
``erase`` tool's, written once."""

from __future__ import annotations

from consumer.core.rows import USER_COLUMNS

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
# The batch's read: its users' rows, and whether anything is parked at all (one row with
# null columns when none of them has a row). A batch heals only when something is parked
# (or it parks): on the usual path, with nothing parked, parking costs no round trip.
USERS_AND_ANY_PARKED = f"""
SELECT {", ".join(f"u.{c}" for c in USER_COLUMNS)}, p.any_parked
FROM (SELECT EXISTS (SELECT 1 FROM parked_events) AS any_parked) AS p
LEFT JOIN users AS u ON u.user_id = ANY($1::text[])
"""
EMAIL_OWNERS = """
SELECT lower(email) AS email, user_id FROM users
WHERE status = 'active' AND lower(email) = ANY($1::text[])
"""
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
