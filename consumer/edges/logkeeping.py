"""The service's care of its event log, on a schedule: the coming days' partitions, the
retention prune (when ``LOG_RETENTION`` is set), and the figures /metrics shows of it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from consumer.edges import metrics
from consumer.edges.store import Store
from consumer.edges.store_erasure import erasure_counts
from consumer.edges.store_log import Connection, Prune, add_days_ahead, oldest_recorded, prune
from consumer.settings import Settings

log = logging.getLogger(__name__)


async def keep_log(store: Store, settings: Settings) -> None:
    """``care_for_log`` now and every ``LOG_MAINTENANCE_INTERVAL_SECONDS``; a failure is
    logged and tried again next time. Runs until cancelled."""
    while True:
        try:
            await care_for_log(store, settings)
        except Exception as exc:  # PostgreSQL away, a lock not had in time: next round
            log.warning("the event log's upkeep failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(settings.log_maintenance_interval_seconds)


async def care_for_log(store: Store, settings: Settings) -> Prune | None:
    """One round of upkeep; returns the prune it made, if any. Replicas run it side by
    side: adding a day is idempotent, and only one of them prunes at a time."""
    async with store.pool.acquire() as conn:
        pruned = None
        try:
            await add_days_ahead(conn)
            if settings.log_retention is not None:
                pruned = await _prune(conn, datetime.now(UTC) - settings.log_retention)
        except Exception:
            # Even when a step failed: a stuck prune must show in the oldest row's age.
            # (Not when cancelled: a shutdown must not wait on the database once more.)
            await _measure(conn)
            raise
        await _measure(conn)
    return pruned


async def _prune(conn: Connection, horizon: datetime) -> Prune | None:
    pruned = await prune(conn, horizon, "schedule", dry_run=False, wait=False)
    if pruned is not None and pruned.done:
        log.info(
            "pruned the event log",
            extra={
                "days": [str(day) for day in pruned.days],
                "rows": pruned.rows,
                "horizon": horizon.isoformat(),
            },
        )
    return pruned


async def _measure(conn: Connection) -> None:
    oldest = await oldest_recorded(conn)
    age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    metrics.LOG_OLDEST_AGE.set(max(0.0, age))
    metrics.ERASURES.update(await erasure_counts(conn))
