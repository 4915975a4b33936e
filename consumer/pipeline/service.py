"""The consumer loop: fetch, take, decode, plan and write, after-commit.

    Kafka --fetch--> take (fences) --> decode (pure) --> write: one transaction
                                          |              (plan, apply, offsets by
                                          |               compare-and-set)
                                          +-- poison --> dead letters, acknowledged
                                                         before the commit
                                                              |
                                    after-commit (Kafka commit, metrics, lag) <--+

Offsets live in PostgreSQL beside the effects they cover, and a partition is positioned
from them when it is assigned (``positioning``), so a crash at any moment neither loses
nor repeats an effect. Each part lives in a module of its own: the partition state
(``partitions``), the fetch (``fetch``), the batches and their transaction
(``batches``), the write lanes (``lanes``), the rebalance listener (``rebalance``) and
the work after a commit (``aftercommit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.core.batchplan import BatchPlan
from consumer.edges import metrics
from consumer.edges.deadletter import DeadLetter, DeadLetterQueue
from consumer.edges.errors import OffsetsMoved, is_transient, retrying
from consumer.edges.health import Health
from consumer.edges.kafka import client_options, max_request_bytes, start_producer
from consumer.edges.store import Store
from consumer.pipeline.aftercommit import AfterCommit
from consumer.pipeline.batches import (
    CommittedBatch,
    GuardCrossed,
    OffsetsMove,
    PreparedBatch,
    cut_batch,
    decode_batch,
    write_batch,
)
from consumer.pipeline.batchspans import (
    BatchSpans,
    OnRetry,
    end_dropped,
    end_failed,
    recording_retries,
)
from consumer.pipeline.fetch import Fetched, Fetcher
from consumer.pipeline.lanes import WriteLanes
from consumer.pipeline.memberstatus import member_status
from consumer.pipeline.partitions import Partitions, apply_pauses
from consumer.pipeline.pastend import PastEndWatch
from consumer.pipeline.positioning import Positioner
from consumer.pipeline.rebalance import RebalanceListener
from consumer.pipeline.stormguard import BatchGuard
from consumer.settings import Settings

log = logging.getLogger(__name__)


class ConsumerService:
    """Runs the pipeline until ``stop()``; owns the consumer, the producer and the pool."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consumer: AIOKafkaConsumer,
        dead_letters: DeadLetterQueue,
        health: Health,
        spans: BatchSpans | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.health = health
        self._spans = spans  # None without tracing
        self._stopping = asyncio.Event()
        self._batches_committed = 0
        self.partitions = Partitions()
        self._guard = BatchGuard(settings)
        self._lanes = WriteLanes(settings.db_concurrent_batches)
        self._after_commit = AfterCommit(consumer, self.partitions, self._stopping)
        self._positioner = Positioner(
            settings,
            store,
            consumer,
            self.partitions,
            self._stopping,
            functools.partial(_loop_retried, self.health),
            self._after_commit.follow,
        )
        self._past_end = PastEndWatch(settings, store, consumer, self.partitions)
        self._fetcher = Fetcher(
            settings, consumer, self.partitions, self._lanes, health, self._stopping
        )

    @classmethod
    async def start(
        cls, settings: Settings, store: Store, health: Health, spans: BatchSpans | None = None
    ) -> ConsumerService:
        """Connect to Kafka (retrying while it is unreachable) and subscribe."""
        consumer, dead_letters = await connect_to_kafka(settings, health)
        service = cls(settings, store, consumer, dead_letters, health, spans)
        listener = RebalanceListener(
            consumer,
            service.partitions,
            service._lanes,
            service._positioner,
            service._guard,
            health,
        )
        consumer.subscribe([settings.kafka_topic], listener=listener)
        return service

    def status(self) -> dict[str, Any]:
        """This member's partitions and where each stands (``GET /status``)."""
        return member_status(
            self.settings,
            self.consumer,
            self.partitions,
            self._after_commit,
            self._guard.limits,
            self.health,
        )

    def stop(self) -> None:
        """Ask the loop to finish the batches in hand and return."""
        self._stopping.set()

    async def run(self) -> None:
        """The loop. Returns after ``stop()``; raises on anything it cannot handle.

        The next batch is fetched and decoded while others are being written, and batches
        of different partitions are written side by side (``lanes``).
        """
        stop_requested = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                if self._positioner.failed is not None:
                    raise self._positioner.failed
                if self.partitions.unpositioned:
                    self._positioner.soon()
                self._reap()
                # Taken before the fetch, which can span a whole rebalance (getmany waits
                # for it): what it returns then belongs to the generation before it.
                generation = self.partitions.generation
                fetched = await self._fetcher.fetch(stop_requested)
                self.health.beat()
                batch = await self._take_and_decode(fetched, generation) if fetched else None
                if batch is not None:
                    await self._lanes.wait_for_room(batch.partitions)
                    self._reap()
                    if self._is_current(batch):
                        self._lanes.start(batch.partitions, self._write(batch))
                    else:
                        self._drop(batch)
                await self._past_end.check()
                self._after_commit.update_lag()
            # The batches in hand are finished and committed.
            await self._lanes.wait_for(None)
            self._reap()
            await self._after_commit.finish()
        except Exception as exc:
            if self._stopping.is_set() and is_transient(exc):
                log.info("stopping during an outage; the batch in hand is not committed")
                return
            raise
        finally:
            stop_requested.cancel()
            self._lanes.cancel()
            self._after_commit.cancel()
            self._positioner.cancel()

    async def close(self, within_seconds: float) -> None:
        """Leave the group and close every client, within ``within_seconds`` in all."""
        self._stopping.set()  # a last rebalance while leaving starts no positioning
        deadline = time.monotonic() + within_seconds
        for stop in (self.consumer.stop, self.dead_letters.producer.stop):
            try:
                await asyncio.wait_for(stop(), max(0.1, deadline - time.monotonic()))
            except (TimeoutError, KafkaError, OSError, asyncio.CancelledError) as exc:
                # aiokafka's consumer, stopped while the broker is away, awaits fetch tasks
                # it cancelled itself and lets their CancelledError out: not ours, unless
                # this task is being cancelled.
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise
                log.warning(
                    "a Kafka client did not close cleanly", extra={"error": type(exc).__name__}
                )

    def _reap(self) -> None:
        self._lanes.reap()
        self._after_commit.reap()

    async def _take_and_decode(self, fetched: Fetched, generation: int) -> PreparedBatch | None:
        """Take what is past the fences, and decode it, yielding to the writes between
        chunks."""
        started = time.monotonic()
        taken = self.partitions.take(fetched, generation)
        if not taken.messages:
            return None
        batch = PreparedBatch(taken.generation, started, taken_from=taken.states)
        batch.start_offsets = taken.starts
        await decode_batch(taken.messages, self.settings.max_message_bytes, batch)
        if self._spans is not None:
            batch.span = self._spans.start(batch)
        return batch

    def _is_current(self, batch: PreparedBatch) -> bool:
        return self.partitions.is_current(batch.generation, batch.taken_from)

    async def _write(self, batch: PreparedBatch) -> None:
        """Write one batch, retrying transient failures. The Kafka commit that follows
        is not waited for here: the write is the critical path of the pipeline."""
        if not self._is_current(batch):
            # A rebalance came first (whoever owns them now redoes it), or a batch of
            # its partitions was dropped: they are positioned again, and it is refetched.
            self._drop(batch)
            return
        metrics.BATCH_SIZE.observe(len(batch.records))
        fetched, held_at = batch, {}
        try:
            while True:
                try:
                    plan, dead = await self._write_with_retries(batch)
                    break
                except GuardCrossed as crossed:
                    # Written again without what the guard holds back, from the record
                    # that crossed the limit on.
                    held_at.update(crossed.at)
                    batch = cut_batch(batch, crossed.at)
        except OffsetsMoved as moved:
            # Rolled back: its records were written by whoever moved the offsets (a
            # member that took over these partitions while this batch was in hand,
            # or this batch's own earlier attempt whose COMMIT landed unseen).
            log.warning(
                "stored offsets moved under a batch: dropped, partitions positioned again",
                extra={"partitions": sorted(p for _, p in moved.partitions)},
            )
            self._drop(batch)
            self._end_retries(batch)  # what its retries paused, but not these partitions
            return
        except BaseException as exc:  # the loop stops: its partitions stay paused
            if batch.span is not None:
                end_failed(batch.span, exc)
            raise
        self.health.db_up(True)
        self.health.kafka_up(True)  # it fetched this batch and took its dead letters
        self._guard.count(batch.records, dead)
        for tp, offset in held_at.items():
            self._hold(tp, offset, fetched)
        self._end_retries(batch)
        self._batches_committed += 1
        if self._batches_committed == self.settings.failpoint_kill_after_db_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        self._after_commit.batch_committed(CommittedBatch(batch, plan, dead))

    async def _write_with_retries(self, batch: PreparedBatch) -> tuple[BatchPlan, list[DeadLetter]]:
        """``write_batch``, retrying transient failures; the guard checks each attempt."""
        # The partitions, not the batch: tenacity's retry state is a reference cycle, and
        # would keep the whole batch alive until the next full collection.
        on_retry: OnRetry = functools.partial(self._on_write_retry, batch.partitions)
        if batch.span is not None:
            on_retry = recording_retries(batch.span, on_retry)
        move = OffsetsMove(self.settings.kafka_group_id, batch.start_offsets, batch.next_offsets)
        check = self._guard.check_for(batch.records)
        async for attempt in retrying(self.settings, "write_batch", self._stopping, on_retry):
            with attempt:
                return await write_batch(
                    self.store, batch.accepted, batch.poison, self.dead_letters, move, check
                )
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def _hold(self, tp: TopicPartition, offset: int, batch: PreparedBatch) -> None:
        """Hold a partition at the record the storm guard stopped at: paused, and
        reported, until a restart (or a rebalance) counts afresh."""
        at = next(r for r in batch.records if r.partition == tp.partition and r.offset == offset)
        self.partitions.hold(tp, offset, at.timestamp_ms)
        apply_pauses(self.consumer, self.partitions)
        metrics.DLQ_GUARD_TRIPPED.labels(tp.topic, str(tp.partition)).set(1)
        log.error(
            "dead-letter storm guard tripped: partition held at the record that crossed "
            "the limit; fix the publisher, then restart or raise the limit to release it",
            extra={**at.where(), **self._guard.limits_described()},
        )

    def _drop(self, batch: PreparedBatch) -> None:
        """Drop a batch: its owned partitions are paused and positioned again."""
        self.partitions.dropped(batch.partitions, self.consumer.assignment())
        apply_pauses(self.consumer, self.partitions)
        if batch.span is not None:
            end_dropped(batch.span)

    def _end_retries(self, batch: PreparedBatch) -> None:
        self.partitions.retry_ended(batch.partitions)
        apply_pauses(self.consumer, self.partitions)

    def _on_write_retry(
        self, partitions: frozenset[TopicPartition], operation: str, exc: BaseException
    ) -> None:
        """A batch's write failed and will be tried again: nothing more of its partitions
        is fetched meanwhile. The other partitions go on, in writes of their own."""
        _loop_retried(self.health, operation, exc)
        self.partitions.retrying(partitions)
        apply_pauses(self.consumer, self.partitions)


def _loop_retried(health: Health, operation: str, exc: BaseException) -> None:
    """A retry in the loop: counted; retrying through an outage is not being wedged; and a
    failure that is not Kafka's says PostgreSQL is down."""
    _retried(health, operation, exc)
    if not isinstance(exc, KafkaError):
        health.db_up(False)


def _retried(health: Health, operation: str, exc: BaseException) -> None:
    """Waiting out an unreachable broker at start counts as coming round (``/healthz``)."""
    metrics.count_retry(operation, exc)
    health.beat()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def connect_to_kafka(
    settings: Settings, health: Health
) -> tuple[AIOKafkaConsumer, DeadLetterQueue]:
    """The group's consumer (not yet subscribed) and the dead-letter queue, both started,
    retrying while Kafka is unreachable."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.kafka_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        fetch_max_bytes=settings.kafka_fetch_max_bytes,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    # Retried until Kafka answers: a signal meanwhile ends this by cancelling it (see
    # ``consumer.app.start_up``), and what was started is stopped again.
    never = asyncio.Event()
    on_retry = functools.partial(_retried, health)
    producer: AIOKafkaProducer | None = None
    try:
        async for attempt in retrying(settings, "kafka_connect", never, on_retry):
            with attempt:
                producer = await start_producer(settings, linger_ms=5)
        async for attempt in retrying(settings, "kafka_connect", never, on_retry):
            with attempt:
                await consumer.start()
    except BaseException:
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 1.0)
        raise
    assert producer is not None
    health.kafka_up(True)
    dead_letters = DeadLetterQueue(
        producer,
        settings.kafka_dlq_topic,
        settings.kafka_group_id,
        max_request_bytes(settings),
        functools.partial(start_producer, settings, linger_ms=5),
    )
    return consumer, dead_letters
