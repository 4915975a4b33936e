"""Parking, in a batch's transaction: park what waits (within the bounds), and heal what
waited for the users the batch changed or the emails it freed, round after round. The
rules are ``consumer.core.parking``'s and ``Planner``'s; the statements
``consumer.edges.store_parking``'s."""

from __future__ import annotations

import logging
from collections.abc import Collection

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from consumer.core.batchplan import BatchPlan, Planner, Verdict, claimed_emails
from consumer.core.parking import (
    Parked,
    Parking,
    ParkingLimits,
    choose_parked,
    healing_order,
    parkable,
    sort_decided,
)
from consumer.core.projection import EventKey
from consumer.core.records import Outcome
from consumer.edges.store_parking import (
    forget,
    park,
    parked_counts,
    read_parked,
    still_waiting,
    try_lock_users,
    waiting_for,
)
from consumer.edges.store_read import read_for_healing

log = logging.getLogger(__name__)

Connection = asyncpg.Connection | PoolConnectionProxy

# Healing goes on while what it heals changes more users or frees more emails; each parked
# event heals once, so this only bounds a pathological chain within one transaction.
_MOST_HEALING_ROUNDS = 1000


async def park_parkable(conn: Connection, plan: BatchPlan, limits: ParkingLimits) -> None:
    """Park the plan's parkable rejections that the limits allow (``plan.verdicts``
    then says ``PARKED`` for them, and ``plan.parked`` holds the new ones)."""
    candidates = {v.event.subject for v in plan.verdicts if parkable(v)}
    if not candidates:
        return
    counts = await parked_counts(conn, candidates, limits.rows)
    plan.verdicts, parkings = choose_parked(
        plan.verdicts, counts.per_user, counts.rows, limits, counts.keys
    )
    await park(conn, parkings)
    plan.parked.extend((Verdict(p.record, p.event, Outcome.PARKED), p.rejection) for p in parkings)


async def heal(
    conn: Connection,
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
    locked = set(locked)
    # A read per round rather than one before the batch's plan: the first round must see
    # what this batch just parked, and what a round heals (a user created, an email
    # freed) decides which parked events the next round reaches.
    for _ in range(_MOST_HEALING_ROUNDS):
        rows = await waiting_for(conn, touched, freed)
        got: set[str] = set()
        if others := {row["user_id"] for row in rows} - locked:
            got = await try_lock_users(conn, others)
            locked |= got
            rows = [row for row in rows if row["user_id"] in locked]
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
        event_keys = [(event.source, event.id) for _, event in entries]
        # After the try-locks, in a statement of its own: it sees what a writer that
        # held one of them committed.
        more = await read_for_healing(conn, got, emails, event_keys)
        for user_id, key in more.data_keys.items():
            keys.setdefault(user_id, key)
        planner.learn(more.states, more.logged, more.email_owners, emails)
        freed_before = set(planner.freed)
        touched = set()
        done: list[EventKey] = list(gone)
        waiting: list[Parking] = []
        for user_id in sorted(groups):
            order = healing_order(groups[user_id])
            verdicts = planner.decide_group([(p.record, p.event) for p in order])
            decided = sort_decided(order, verdicts)
            plan.healed.extend((v, p.parked_at, p.rejection) for v, p in decided.healed)
            plan.released.extend((p.record, r) for p, r in decided.released)
            waiting.extend(decided.waiting)
            done.extend((p.event.source, p.event.id) for p in decided.done)
            if any(v.result is Outcome.APPLIED for v, _ in decided.healed):
                touched.add(user_id)
        # Written before the next round reads what waits: it reads these rows again.
        await still_waiting(conn, waiting)
        await forget(conn, done)
        freed = planner.freed - freed_before
        if not touched and not freed:
            return
    log.warning("healing stopped after %d rounds; the sweep goes on", _MOST_HEALING_ROUNDS)
