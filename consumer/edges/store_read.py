"""A batch's read phase: the locks of its users, then, in one statement, what its plan
needs (``consumer.core.planning.Snapshot``): their rows, who holds the emails the batch
claims, whether anything is parked, and the logged keys among the batch's when they can
be named before the states are known."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.batchplan import claimed_emails
from consumer.core.decode import AnyUserEvent
from consumer.core.dedupe import possibly_logged
from consumer.core.planning import Snapshot
from consumer.core.projection import EventKey, UserState
from consumer.core.records import KafkaRecord
from consumer.core.rows import USER_COLUMNS, state_from_row
from consumer.edges.store_users import LOCK_USERS, from_holders, from_logged, logged_keys

Connection = asyncpg.Connection | PoolConnectionProxy

# Every kind of row has the same columns (a UNION), those it does not use null; ``what``
# says which kind it is.
_COLUMNS = ("what", *USER_COLUMNS, "any_parked", "source", "event_id")


def _select(types: dict[str, str] | None = None, **given: str) -> str:
    """A select list in ``_COLUMNS`` order: ``given`` expressions, else NULL (typed as in
    ``types``: the first branch of a UNION gives the columns their types)."""
    types = types or {}

    def column(name: str) -> str:
        expression = given.get(name, "NULL") + (f"::{types[name]}" if name in types else "")
        return name if expression == name else f"{expression} AS {name}"

    return ", ".join(map(column, _COLUMNS))


# The first branch of the UNION types the columns it leaves null.
_AS_USERS = _select(
    {"any_parked": "boolean", "source": "text", "event_id": "text"},
    what="'user'",
    **{c: c for c in USER_COLUMNS},
)
_USERS = f"""
SELECT {_AS_USERS}
FROM users WHERE user_id = ANY($1::text[])"""
_HOLDERS = f"""
SELECT {_select(what="'holder'", email="lower(email)", user_id="user_id")}
{from_holders("$2")}"""
# Whether anything is parked at all: a batch heals only when something is parked (or it
# parks), so with nothing parked, parking costs the usual path nothing more.
_ANY_PARKED = f"""
SELECT {_select(what="'parked'", any_parked="EXISTS (SELECT 1 FROM parked_events)")}"""
_LOGGED = f"""
SELECT {_select(what="'logged'", source="e.source", event_id="e.event_id")}
{from_logged("$3", "$4")}"""
# The read, in one statement. Branches of a UNION, not joins: each keeps the plan it has
# alone (measured: a LEFT JOIN of the users' scan cost it 10%).
READ = f"{_USERS}\nUNION ALL{_HOLDERS}\nUNION ALL{_ANY_PARKED}"
READ_WITH_KEYS = f"{READ}\nUNION ALL{_LOGGED}"
# Healing's read in each round, once the users it reaches are locked: theirs, who holds
# the emails the parked events claim, and which of their keys the log holds.
HEAL_READ = f"{_USERS}\nUNION ALL{_HOLDERS}\nUNION ALL{_LOGGED}"


class Read(NamedTuple):
    """The rows of a read, sorted out."""

    states: dict[str, UserState]
    data_keys: dict[str, bytes | None]
    email_owners: dict[str, str]
    logged: list[EventKey]
    any_parked: bool


def _sorted_out(rows: Iterable[asyncpg.Record]) -> Read:
    read = Read({}, {}, {}, [], any_parked=False)
    any_parked = False
    for row in rows:
        what = row["what"]
        if what == "user":
            read.states[row["user_id"]] = state_from_row(row)
            read.data_keys[row["user_id"]] = row["data_key"]
        elif what == "holder":
            read.email_owners[row["email"]] = row["user_id"]
        elif what == "logged":
            read.logged.append((row["source"], row["event_id"]))
        else:
            any_parked = row["any_parked"]
    return read._replace(any_parked=any_parked)


async def read_snapshot(
    conn: Connection,
    accepted: Sequence[tuple[KafkaRecord, AnyUserEvent]],
    every_key: bool = False,
) -> Snapshot:
    """Lock the users of ``accepted`` and read what their plan needs. With ``every_key``,
    every event's key is looked up in the log; otherwise those ``possibly_logged`` names.

    The lock is a statement of its own, first: a statement sees what was committed when
    it began, so a read in the lock's statement would miss what the writer it waited for
    committed.
    """
    subjects = {event.subject for _, event in accepted}
    await conn.execute(LOCK_USERS, sorted(subjects))
    emails = claimed_emails(accepted)
    keys: list[EventKey] = [(e.source, e.id) for _, e in accepted] if every_key else []
    if keys:
        sources, ids = [s for s, _ in keys], [i for _, i in keys]
        rows = await conn.fetch(READ_WITH_KEYS, list(subjects), emails, sources, ids)
    else:
        rows = await conn.fetch(READ, list(subjects), emails)
    read = _sorted_out(rows)
    logged = read.logged
    if not every_key:
        # Which keys may be logged follows from the states just read: a second statement,
        # for a batch with an event not newer than its user's latest version (a
        # redelivery, a replay, a stale event); a live batch seldom has one. Looking up
        # every key in the first statement instead would probe each day of the log for
        # every event of every batch.
        keys = [(e.source, e.id) for _, e in possibly_logged(accepted, read.states)]
        logged = await logged_keys(conn, keys)
    return Snapshot(
        read.states,
        read.data_keys,
        emails,
        read.email_owners,
        frozenset(keys),
        logged,
        read.any_parked,
    )


async def read_for_healing(
    conn: Connection, user_ids: Collection[str], emails: Sequence[str], keys: Sequence[EventKey]
) -> Read:
    """For a round of healing: the states of ``user_ids`` (locked by then), the holders of
    ``emails``, and which of ``keys`` are logged, in one statement."""
    if not user_ids and not emails and not keys:
        return Read({}, {}, {}, [], any_parked=False)
    rows = await conn.fetch(
        HEAL_READ, list(user_ids), emails, [s for s, _ in keys], [i for _, i in keys]
    )
    return _sorted_out(rows)
