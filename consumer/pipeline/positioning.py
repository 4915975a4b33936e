"""Positioning assigned partitions from the offsets stored in PostgreSQL.

Offsets live in PostgreSQL beside the effects they cover, so a partition is read from
there, not from Kafka's committed offset: a crash at any moment neither loses nor
repeats an effect. A partition seen for the first time in its group starts where Kafka
says (else at the beginning), and that start is claimed in PostgreSQL first.

Neither the rebalance listener nor the loop waits for it. The listener must not wait on
PostgreSQL: aiokafka sends no heartbeat until it returns, so a slow read there (a lock,
a database failing over) would cost the membership once it outlasted the session
timeout. The loop goes on with the partitions it has. Until positioned, a partition is
paused, and without a fence nothing of it is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.edges.errors import retrying
from consumer.edges.store import Store
from consumer.pipeline.partitions import Partitions, apply_pauses
from consumer.pipeline.tasks import start_task
from consumer.settings import Settings


class Positioner:
    """Positions the unpositioned partitions in the background, one run at a time."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consumer: AIOKafkaConsumer,
        partitions: Partitions,
        stopping: asyncio.Event,
        on_retry: Callable[[str, BaseException], None],
        on_positioned: Callable[[Mapping[TopicPartition, int]], None],
    ) -> None:
        self._settings = settings
        self._store = store
        self._consumer = consumer
        self._partitions = partitions
        self._stopping = stopping
        self._on_retry = on_retry
        self._on_positioned = on_positioned
        self._task: asyncio.Task[None] | None = None
        # A failure that is not transient: the loop raises it.
        self.failed: Exception | None = None

    def soon(self) -> None:
        """Start positioning, unless it is under way or the service is stopping."""
        if self._stopping.is_set() or (self._task is not None and not self._task.done()):
            return
        self._task = start_task(self._keep_positioning(), "positioning")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _keep_positioning(self) -> None:
        """Position until nothing is left to, retrying transient failures. One runs at a
        time: offsets read by a second one before the first one's partitions took a batch
        would rewind them. A rebalance under way ends it; the assignment restarts it."""
        try:
            async for attempt in retrying(
                self._settings, "load_offsets", self._stopping, self._on_retry
            ):
                with attempt:
                    while self._partitions.unpositioned and not self._partitions.rebalancing:
                        await self._position_once()
        except Exception as exc:
            if not self._stopping.is_set():
                self.failed = exc

    async def _position_once(self) -> None:
        generation = self._partitions.generation
        wanted = self._partitions.to_position(self._consumer.assignment())
        if not wanted:
            return
        targets = await self._read_targets(wanted)
        # No await from here on. Records of a partition without a fence are dropped when
        # taken, so each partition gets its fence in the same step as its seek: the seek
        # goes back before whatever was dropped, and nothing after it is dropped.
        seeks = self._partitions.positioned(targets, self._consumer.assignment(), generation)
        if not seeks:
            return  # revoked meanwhile, or no longer owned
        for tp, offset in seeks.items():
            self._consumer.seek(tp, offset)
        apply_pauses(self._consumer, self._partitions)
        # Kafka's view may lag what PostgreSQL holds (a crash between the two commits, a
        # Kafka commit that failed): bring it up now, not after the next batch.
        self._on_positioned(seeks)

    async def _read_targets(self, wanted: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each of ``wanted`` starts: its stored offset, claimed first if it has none."""
        group = self._settings.kafka_group_id
        stored = await self._store.load_offsets(group, wanted)
        targets: dict[TopicPartition, int] = {}
        unclaimed: dict[TopicPartition, int | None] = {}
        for tp in wanted:
            if (offset := stored.get(tp)) is not None:
                targets[tp] = offset
            else:  # first time in this group: where Kafka says, else the beginning
                unclaimed[tp] = await self._consumer.committed(tp)
        if unclaimed:
            if missing := [tp for tp, offset in unclaimed.items() if offset is None]:
                unclaimed.update(await self._consumer.beginning_offsets(missing))
            claimed = await self._store.claim_offsets(
                group, {tp: offset or 0 for tp, offset in unclaimed.items()}
            )
            targets.update({tp: claimed[tp] for tp in unclaimed})
        return targets
