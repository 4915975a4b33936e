"""What ``GET /status`` says about this member: its partitions, where each stands, what
is paused and why, the last commit, whether PostgreSQL and the broker answer, and how many
events are parked (as the parked events' sweep last read them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumer import __version__
from consumer.core.guard import GuardLimits
from consumer.edges import metrics
from consumer.edges.health import Health
from consumer.pipeline.aftercommit import AfterCommit
from consumer.pipeline.partitions import Partitions, PartitionState, Status
from consumer.settings import Settings


def member_status(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    partitions: Partitions,
    after_commit: AfterCommit,
    limits: GuardLimits,
    health: Health,
) -> dict[str, Any]:
    """A JSON-ready snapshot; reads what the loop keeps, asks no server."""
    now = time.time()
    paused = consumer.paused()
    held = partitions.held
    rows = []
    for tp in sorted(consumer.assignment()):
        lag = after_commit.lag_of(tp, now)
        rows.append(
            {
                "partition": tp.partition,
                "state": _state_of(partitions.state(tp)),
                "next_offset_to_take": partitions.fence(tp),
                "stored_offset": partitions.stored(tp),
                "high_watermark": consumer.highwater(tp),
                "lag_records": lag[0] if lag else None,
                "lag_seconds": lag[1] if lag else None,
                "paused": tp in paused,
                "held_at_offset": held.get(tp),
            }
        )
    last_commit = after_commit.last_commit
    return {
        "version": __version__,
        "topic": settings.kafka_topic,
        "group": settings.kafka_group_id,
        "rebalancing": partitions.rebalancing,
        "partitions": rows,
        "last_commit": (
            datetime.fromtimestamp(last_commit, UTC).isoformat(timespec="milliseconds")
            if last_commit
            else None
        ),
        "postgresql": "up" if health.is_db_up else "down",
        "kafka": "up" if health.is_kafka_up else "down",
        "dlq_guard": {
            "max_consecutive": limits.max_consecutive,
            "max_ratio": limits.max_ratio,
            "window": limits.window,
            "held": len(held),
        },
        "parked": parked_status(settings, metrics.PARKED),
    }


def parked_status(settings: Settings, parked: metrics.ParkedNow) -> dict[str, Any]:
    """The events parked in PostgreSQL (for the whole group, not this member alone), as
    the sweep read them last (every PARK_SWEEP_INTERVAL_SECONDS): no query of its own."""
    return {
        "events": parked.rows,
        "oldest_age_seconds": round(parked.oldest_age_seconds, 3),
        "ttl_seconds": settings.park_ttl.total_seconds(),
        "read_every_seconds": settings.park_sweep_interval_seconds,
    }


def _state_of(state: PartitionState | None) -> str:
    """Why a partition is or is not being consumed."""
    return (state.status if state else Status.CONSUMING).value
