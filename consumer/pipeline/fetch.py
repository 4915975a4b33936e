"""Fetching the next batch from Kafka, and reading around what the client cannot parse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from consumer.core.records import FetchedRecord
from consumer.edges.health import Health
from consumer.pipeline.lanes import WriteLanes
from consumer.pipeline.partitions import Partitions
from consumer.pipeline.tasks import retrieved
from consumer.pipeline.unreadable import UNPARSEABLE, read_around_unparseable
from consumer.settings import Settings

log = logging.getLogger(__name__)

_REBALANCE_BEAT_SECONDS = 1.0
# After a fetch the client could not parse, at most this many records of a partition are
# read one at a time (tens of ms); the next fetch reads on, as usual or this way again.
_READ_AROUND_RECORDS = 500

Fetched = Mapping[TopicPartition, Sequence[FetchedRecord]]


class Fetcher:
    """Fetches for the loop: from the partitions without a batch in hand, if any has one."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        partitions: Partitions,
        lanes: WriteLanes,
        health: Health,
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._partitions = partitions
        self._lanes = lanes
        self._health = health
        self._stopping = stopping

    async def fetch(self, stop_requested: asyncio.Task[bool]) -> Fetched:
        """The next batch, or nothing if the service is asked to stop first (``getmany``
        waits as long as the group is rebalancing). A fetch from only some partitions
        also ends, empty, when a write finishes: the next one may take from them all."""
        partitions = self._partitions_to_fetch()
        fetching = retrieved(
            asyncio.ensure_future(
                self._consumer.getmany(
                    *partitions,
                    timeout_ms=self._settings.kafka_fetch_timeout_ms,
                    max_records=self._settings.kafka_max_poll_records,
                )
            )
        )
        wake_on = {fetching, stop_requested, *(self._lanes.tasks if partitions else ())}
        while not (
            await asyncio.wait(
                wake_on, timeout=_REBALANCE_BEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        )[0]:
            if self._partitions.rebalancing:
                # getmany waits for the group to settle, as long as the slowest member
                # takes to rejoin: waiting on the group is not being wedged.
                self._health.beat()
        if not fetching.done():
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            return {}
        try:
            fetched: Fetched = fetching.result()
        except UNPARSEABLE as exc:
            log.warning(
                "the Kafka client could not parse a fetched record; reading record by record",
                extra={"error": type(exc).__name__},
            )
            return await self._read_around_unparseable(partitions)
        return fetched

    def _partitions_to_fetch(self) -> list[TopicPartition]:
        """While batches are being written, the partitions without one, so that the next
        batch can be written beside them; all of them (an empty list) otherwise, or when
        every partition has a batch in hand (its next batch is then decoded meanwhile)."""
        if not self._lanes:
            return []
        busy = self._lanes.busy()
        return [tp for tp in self._consumer.assignment() if tp not in busy]

    async def _read_around_unparseable(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, list[FetchedRecord]]:
        """Read each positioned partition of the failed fetch again, one record at a time,
        with stand-ins for what the client cannot parse (``pipeline.unreadable``)."""
        candidates = self._partitions.positioned_among(
            partitions or sorted(self._consumer.assignment())
        )
        # The failed fetch may have drained other partitions before it raised, moving
        # their positions past records nobody took: back to their fences, paused or not.
        for tp in candidates:
            self._consumer.seek(tp, self._partitions.fence(tp))
        wait_ms = max(500, 3 * self._settings.kafka_fetch_max_wait_ms)
        fetched: dict[TopicPartition, list[FetchedRecord]] = {}
        for tp in candidates:
            start = self._partitions.fence(tp)
            if start is None or tp in self._consumer.paused() or self._stopping.is_set():
                continue
            self._health.beat()  # a partition at a time, each within a few fetches
            try:
                records = await read_around_unparseable(
                    self._consumer, tp, start, _READ_AROUND_RECORDS, wait_ms
                )
            except IllegalStateError:
                continue  # revoked meanwhile: its new owner reads it
            if (fence := self._partitions.fence(tp)) != start:
                # Positioned again meanwhile (a batch of it was dropped): where that put it.
                if fence is not None:
                    self._consumer.seek(tp, fence)
                continue
            if records:
                fetched[tp] = records
        return fetched
