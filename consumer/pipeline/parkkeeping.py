"""The parked events' sweep, on a schedule in the live consumer: heal what a batch could
not reach, dead-letter what waited ``PARK_TTL``, and read the figures /metrics shows.

The parked rows are the state, so the sweep survives restarts, and replicas run it side
by side: each takes a user's lock without waiting before it touches the user's parked
events, and a row is removed in the transaction that heals or dead-letters it, so no
event is applied or dead-lettered twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from consumer.core.batchplan import BatchPlan
from consumer.core.parking import parked_record, parked_rejection
from consumer.edges import metrics
from consumer.edges.deadletter import DeadLetterQueue
from consumer.edges.store import Store
from consumer.edges.store_parking import healable_users, parked_now, take_expired
from consumer.settings import Settings

log = logging.getLogger(__name__)

# Per transaction: a backlog is worked through in several, each short.
SWEEP_CHUNK = 500
# Chunks per round at most, so that one round ends even while a flood goes on.
_MOST_CHUNKS = 20


@dataclass
class Sweep:
    """What one round did."""

    healed: int = 0
    released: int = 0
    expired: int = 0


async def keep_parked(store: Store, dead_letters: DeadLetterQueue, settings: Settings) -> None:
    """``sweep_parked`` now and every ``PARK_SWEEP_INTERVAL_SECONDS``; a failure is
    logged and tried again next time. Runs until cancelled."""
    metrics.PARK_TTL.set(settings.park_ttl.total_seconds())
    while True:
        try:
            await sweep_parked(store, dead_letters, settings)
        except Exception as exc:  # PostgreSQL or the broker away: next round
            log.warning("the parked events' sweep failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(settings.park_sweep_interval_seconds)


async def sweep_parked(store: Store, dead_letters: DeadLetterQueue, settings: Settings) -> Sweep:
    """One round. With parking off (``PARK_TTL=0``) it heals nothing and dead-letters
    whatever an earlier run left parked."""
    done = Sweep()
    if store.parking is not None:
        try:
            await _heal(store, dead_letters, done)
        except Exception as exc:  # what waited PARK_TTL goes whatever healing does
            log.warning("healing parked events failed", extra={"error": type(exc).__name__})
    # No I/O in a finally: a sweep cancelled at shutdown (PostgreSQL perhaps away) must
    # end at once, not wait on one more connection.
    await _expire(store, dead_letters, settings, done)
    async with store.pool.acquire() as conn:
        metrics.PARKED.update(*await parked_now(conn))
    return done


async def _heal(store: Store, dead_letters: DeadLetterQueue, done: Sweep) -> None:
    for _ in range(_MOST_CHUNKS):
        async with store.pool.acquire() as conn:
            users = await healable_users(conn, SWEEP_CHUNK)
        if not users:
            return
        async with store.batch() as writer:
            plan = await writer.heal_waiting(users)
            await dead_letters.send_all(plan.released)
        count_parking(plan)
        log_parking(plan)
        done.healed += len(plan.healed)
        done.released += len(plan.released)
        if not plan.healed and not plan.released:
            return  # what looked healable is busy or still waits: next round


async def _expire(
    store: Store, dead_letters: DeadLetterQueue, settings: Settings, done: Sweep
) -> None:
    for _ in range(_MOST_CHUNKS):
        async with store.batch() as writer:
            rows = await take_expired(writer.conn, settings.park_ttl, SWEEP_CHUNK)
            letters = [(parked_record(row), parked_rejection(row)) for row in rows]
            since = {
                (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]): row["parked_at"]
                for row in rows
            }
            await dead_letters.send_all(letters, since)
        for (record, rejection), row in zip(letters, rows, strict=True):
            metrics.PARK_EXPIRED_TOTAL.labels(str(rejection.reason)).inc()
            metrics.DEAD_LETTERS.labels(str(rejection.reason)).inc()
            log.warning(
                "parked event expired; dead-lettered",
                extra={
                    **record.where(),
                    "event_id": row["event_id"],
                    "reason": str(rejection.reason),
                    "parked_at": row["parked_at"].isoformat(),
                },
            )
        done.expired += len(rows)
        if len(rows) < SWEEP_CHUNK:
            return


def count_parking(plan: BatchPlan) -> None:
    """The parking metrics of a committed plan: parked, healed, and dead-lettered on
    being decided again."""
    for reason, n in Counter(str(r.reason) for _, r in plan.parked).items():
        metrics.PARKED_TOTAL.labels(reason).inc(n)
    for reason, n in Counter(str(r.reason) for _, _, r in plan.healed).items():
        metrics.HEALED_TOTAL.labels(reason).inc(n)
    for reason, n in Counter(str(r.reason) for _, r in plan.released).items():
        metrics.DEAD_LETTERS.labels(reason).inc(n)


def log_parking(plan: BatchPlan) -> None:
    """One line per event parked, healed or dead-lettered on being decided again: where
    it was, its id and why; never its content."""
    for verdict, rejection in plan.parked:
        log.info(
            "event parked",
            extra={
                **verdict.record.where(),
                "event_id": verdict.event.id,
                "reason": str(rejection.reason),
                "error": rejection.error,
            },
        )
    now = datetime.now(UTC)
    for verdict, parked_at, rejection in plan.healed:
        log.info(
            "parked event healed",
            extra={
                **verdict.record.where(),
                "event_id": verdict.event.id,
                "reason": str(rejection.reason),
                "outcome": str(verdict.result),
                "waited_seconds": round((now - parked_at).total_seconds(), 3),
            },
        )
    for record, rejection in plan.released:
        log.warning(
            "parked event dead-lettered",
            extra={**record.where(), "reason": str(rejection.reason), "error": rejection.error},
        )
