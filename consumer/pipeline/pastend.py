"""Stored offsets past the end of a log: seen, and dealt with as ``OFFSET_PAST_END`` says.

When a topic is younger than the offsets stored for it (deleted and created again, a
migration to another cluster, a fresh embedded broker beside a kept PostgreSQL), a
partition's next offset lies past its high watermark, and the consumer would wait there
for ever, saying nothing. Kafka clients meet this as ``OffsetOutOfRange`` and apply
``auto.offset.reset``; this service keeps its offsets in PostgreSQL, so it decides: by
default it holds the partition, paused and reported, and loses nothing silently; or it
resets the stored offset to the log's beginning or its end, by compare-and-set, and
records the reset beside it.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.edges import metrics
from consumer.edges.errors import is_transient
from consumer.edges.store import Store
from consumer.pipeline.partitions import Partitions, apply_pauses
from consumer.settings import Settings

log = logging.getLogger(__name__)

# How long a partition must be seen past the end before anything is done: a new leader
# can report a high watermark behind the old one's for a moment.
CONFIRM_SECONDS = 5.0


class PastEndWatch:
    """Checks the owned partitions against their high watermarks, after each fetch."""

    def __init__(
        self, settings: Settings, store: Store, consumer: AIOKafkaConsumer, partitions: Partitions
    ) -> None:
        self._settings = settings
        self._store = store
        self._consumer = consumer
        self._partitions = partitions
        self._since: dict[TopicPartition, float] = {}  # when each was first seen past the end

    async def check(self) -> None:
        """Hold or reset each partition found past the end of its log for
        ``CONFIRM_SECONDS`` in a row."""
        highwaters = {tp: self._consumer.highwater(tp) for tp in self._consumer.assignment()}
        found = self._partitions.beyond_the_end(highwaters)
        now = time.monotonic()
        for tp in set(self._since) - found.keys():
            del self._since[tp]
        for tp, (stored, highwater) in found.items():
            if now - self._since.setdefault(tp, now) < CONFIRM_SECONDS:
                continue
            if self._settings.offset_past_end == "hold":
                self._hold(tp, stored, highwater)
            else:
                try:
                    await self._reset(tp, stored, highwater)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning(  # PostgreSQL or Kafka away: tried again next round
                        "could not reset a stored offset past the end of the log yet",
                        extra={
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "error": type(exc).__name__,
                        },
                    )
                    continue
            del self._since[tp]

    def _hold(self, tp: TopicPartition, stored: int, highwater: int) -> None:
        self._partitions.hold_past_end(tp, stored, highwater)
        apply_pauses(self._consumer, self._partitions)
        metrics.OFFSET_PAST_END.labels(tp.topic, str(tp.partition)).set(1)
        log.error(
            "the stored offset is past the end of the log: partition held; if the topic was "
            "created again, set OFFSET_PAST_END=earliest (or latest) and restart to reset it",
            extra={
                "topic": tp.topic,
                "partition": tp.partition,
                "stored_offset": stored,
                "high_watermark": highwater,
            },
        )

    async def _reset(self, tp: TopicPartition, stored: int, highwater: int) -> None:
        mode = self._settings.offset_past_end
        if mode == "latest":
            target = highwater
        else:
            target = (await self._consumer.beginning_offsets([tp]))[tp]
        reason = f"past the end of the log (high watermark {highwater}); OFFSET_PAST_END={mode}"
        moved = await self._store.reset_offset(
            self._settings.kafka_group_id, tp, stored, target, reason
        )
        log.warning(
            "the stored offset was past the end of the log: reset"
            if moved
            else "the stored offset was past the end of the log, and moved meanwhile",
            extra={
                "topic": tp.topic,
                "partition": tp.partition,
                "stored_offset": stored,
                "high_watermark": highwater,
                "new_offset": target if moved else None,
                "offset_past_end": mode,
            },
        )
        # Positioned again, from what is stored now.
        self._partitions.dropped({tp}, self._consumer.assignment())
        apply_pauses(self._consumer, self._partitions)
