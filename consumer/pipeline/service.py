"""The consumer loop: fetch a batch, decode it, write it in one transaction, commit.

    Kafka --getmany--> decode (pure) --> store.apply (one transaction, set-based)
                          |                     |
                          +---- poison ---> dead-letter topic (acknowledged)
                                                |
                          offsets saved in the same transaction --> commit --> Kafka commit

Offsets live in PostgreSQL beside the effects they cover, and a partition is positioned
from them when it is assigned, so a crash at any moment neither loses nor repeats an
effect. The Kafka commit that follows is for tools and lag monitoring.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from consumer.core.ordering import BatchPlan
from consumer.core.records import Outcome, Rejection
from consumer.edges import metrics
from consumer.edges.deadletter import DeadLetter, DeadLetterQueue
from consumer.edges.errors import OffsetsMoved, is_transient, retrying
from consumer.edges.health import Health
from consumer.edges.kafka import client_options, max_request_bytes, start_producer
from consumer.edges.store import Store
from consumer.pipeline.batches import (
    CommittedBatch,
    OffsetsMove,
    PreparedBatch,
    decode_batch,
    write_batch,
)
from consumer.pipeline.partitions import take_unseen
from consumer.pipeline.unreadable import UNPARSEABLE, read_around_unparseable
from consumer.settings import Settings

log = logging.getLogger(__name__)


# A Kafka commit only feeds tools and the lag; it is not waited on for longer.
_KAFKA_COMMIT_SECONDS = 5.0
# While Kafka's committed offsets lag the stored ones (a failed commit, or a partition
# just positioned), a commit is tried again this often, with no new batch needed.
KAFKA_COMMIT_RETRY_SECONDS = 2.0
_REBALANCE_BEAT_SECONDS = 1.0
# After a fetch the client could not parse, at most this many records of a partition are
# read one at a time (tens of ms); the next fetch reads on, as usual or this way again.
_READ_AROUND_RECORDS = 500


class ConsumerService:
    """Runs the pipeline until ``stop()``; owns the consumer, the producer and the pool."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consumer: AIOKafkaConsumer,
        dead_letters: DeadLetterQueue,
        health: Health,
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.health = health
        self._stopping = asyncio.Event()
        # The batches being written, each with its partitions: up to
        # ``db_concurrent_batches`` at once, never two sharing a partition, so that each
        # partition's batches are written in order. A revocation waits for all of them,
        # so they are finished and committed before their partitions move to another member.
        self._writes: dict[asyncio.Task[None], frozenset[TopicPartition]] = {}
        self._unpositioned: set[TopicPartition] = set()
        # Per positioned, owned partition: the next offset not yet taken into a batch.
        self._fence: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._batches_committed = 0
        # Bumped on every revocation: a batch prepared before it is not written.
        self._generation = 0
        self._positioner: asyncio.Task[None] | None = None
        # After a batch commits: its metrics (one task each, done at once) and its
        # offsets for Kafka, merged per partition until the one committer sends them.
        self._counting: set[asyncio.Task[None]] = set()
        self._kafka_pending: dict[TopicPartition, int] = {}
        self._kafka_committer: asyncio.Task[None] | None = None
        # The partitions of each batch being retried, paused meanwhile. Batches written
        # at once share no partition, so their partition sets tell them apart.
        self._retrying: set[frozenset[TopicPartition]] = set()
        # Per partition: bumped whenever a batch of it is dropped, so that a batch taken
        # before that (waiting for its turn) is dropped too, not written.
        self._epochs: dict[TopicPartition, int] = {}
        self._positioning_failed: Exception | None = None
        # From a revocation (or the start) to the next assignment: getmany waits that out.
        self._rebalancing = True

    @classmethod
    async def start(cls, settings: Settings, store: Store, health: Health) -> ConsumerService:
        """Connect to Kafka (retrying while it is unreachable) and subscribe."""
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
        stopping = asyncio.Event()
        async for attempt in retrying(settings, "kafka_connect", stopping, metrics.count_retry):
            with attempt:
                producer = await start_producer(settings, linger_ms=5)
        async for attempt in retrying(settings, "kafka_connect", stopping, metrics.count_retry):
            with attempt:
                await consumer.start()
        health.kafka_up(True)
        dead_letters = DeadLetterQueue(
            producer,
            settings.kafka_dlq_topic,
            settings.kafka_group_id,
            max_request_bytes(settings),
            functools.partial(start_producer, settings, linger_ms=5),
        )
        service = cls(settings, store, consumer, dead_letters, health)
        consumer.subscribe([settings.kafka_topic], listener=_Rebalance(service))
        return service

    def stop(self) -> None:
        """Ask the loop to finish the batches in hand and return."""
        self._stopping.set()

    async def run(self) -> None:
        """The loop. Returns after ``stop()``; raises on anything it cannot handle.

        The next batch is fetched and decoded while others are being written, and batches
        of different partitions are written side by side (``db_concurrent_batches``): one
        transaction waits on PostgreSQL while this process works on another. A batch
        waits for the batches in hand of its partitions, so per-partition order is kept.
        """
        stop_requested = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                if self._positioning_failed is not None:
                    raise self._positioning_failed
                if self._unpositioned:
                    self._position_soon()
                self._reap_writes()
                # Taken before the fetch, which can span a whole rebalance (getmany waits
                # for it): what it returns then belongs to the generation before it.
                generation = self._generation
                fetched = await self._fetch(stop_requested)
                self.health.beat()
                batch = await self._prepare(fetched, generation) if fetched else None
                if batch is not None:
                    await self._wait_for_room(batch.partitions)
                    self._reap_writes()
                    if self._is_current(batch):
                        task = asyncio.create_task(self._write_batch(batch))
                        self._writes[task] = batch.partitions
                    else:
                        self._discard(batch)
                self._update_lag()
            # The batches in hand are finished and committed.
            await self._wait_for_writes_of(None)
            self._reap_writes()
            await asyncio.gather(*self._counting)
            # The committer makes one last attempt once stopping, so that the offsets of
            # the batches just finished reach Kafka without a second wait on it.
            if self._kafka_committer is not None:
                await self._kafka_committer
            elif self._kafka_pending:
                await self._commit_pending_to_kafka()
        except Exception as exc:
            if self._stopping.is_set() and is_transient(exc):
                log.info("stopping during an outage; the batch in hand is not committed")
                return
            raise
        finally:
            stop_requested.cancel()
            for task in [*self._writes, *self._counting]:
                task.cancel()
            if self._kafka_committer is not None:
                self._kafka_committer.cancel()
            if self._positioner is not None:
                self._positioner.cancel()

    def _reap_writes(self) -> None:
        """Forget the finished writes and countings; raise what one of them raised."""
        for task in [task for task in self._writes if task.done()]:
            del self._writes[task]
            task.result()
        for counted in [task for task in self._counting if task.done()]:
            self._counting.discard(counted)
            counted.result()
        if self._kafka_committer is not None and self._kafka_committer.done():
            self._kafka_committer.result()

    def _is_current(self, batch: PreparedBatch) -> bool:
        """No rebalance, and no batch of its partitions dropped, since it was taken."""
        return batch.generation == self._generation and all(
            self._epochs.get(tp, 0) == epoch for tp, epoch in batch.epochs.items()
        )

    async def _wait_for_writes_of(self, partitions: frozenset[TopicPartition] | None) -> None:
        """Until no batch of ``partitions`` (of any partition, if None) is being written."""
        while waiting := [
            task
            for task, theirs in self._writes.items()
            if not task.done() and (partitions is None or theirs & partitions)
        ]:
            await asyncio.wait(waiting)

    async def _wait_for_room(self, partitions: frozenset[TopicPartition]) -> None:
        """Until a batch of ``partitions`` may be written: none of theirs is being written,
        and fewer than ``db_concurrent_batches`` are."""
        await self._wait_for_writes_of(partitions)
        while (running := [task for task in self._writes if not task.done()]) and len(
            running
        ) >= self.settings.db_concurrent_batches:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    def _partitions_to_fetch(self) -> list[TopicPartition]:
        """While batches are being written, the partitions without one, so that the next
        batch can be written beside them; all of them (an empty list) otherwise, or when
        every partition has a batch in hand (its next batch is then decoded meanwhile)."""
        if not self._writes:
            return []
        busy = frozenset[TopicPartition]().union(*self._writes.values())
        return [tp for tp in self.consumer.assignment() if tp not in busy]

    async def _fetch(
        self, stop_requested: asyncio.Task[bool]
    ) -> Mapping[TopicPartition, Sequence[object]]:
        """The next batch, or nothing if the service is asked to stop first (``getmany``
        waits as long as the group is rebalancing). A fetch from only some partitions
        also ends, empty, when a write finishes: the next one may take from them all."""
        partitions = self._partitions_to_fetch()
        fetching = asyncio.ensure_future(
            self.consumer.getmany(
                *partitions,
                timeout_ms=self.settings.kafka_fetch_timeout_ms,
                max_records=self.settings.kafka_max_poll_records,
            )
        )
        wake_on = {fetching, stop_requested, *(self._writes if partitions else ())}
        while not (
            await asyncio.wait(
                wake_on, timeout=_REBALANCE_BEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        )[0]:
            if self._rebalancing:
                # getmany waits for the group to settle, as long as the slowest member
                # takes to rejoin: waiting on the group is not being wedged.
                self.health.beat()
        if not fetching.done():
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            return {}
        try:
            fetched: Mapping[TopicPartition, Sequence[object]] = fetching.result()
        except UNPARSEABLE as exc:
            log.warning(
                "the Kafka client could not parse a fetched record; reading record by record",
                extra={"error": type(exc).__name__},
            )
            return await self._read_around_unparseable(partitions)
        return fetched

    async def _read_around_unparseable(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, list[Any]]:
        """Read each positioned partition of the failed fetch again, one record at a time,
        with stand-ins for what the client cannot parse (``consumer.pipeline.unreadable``)."""
        candidates = [
            tp for tp in partitions or sorted(self.consumer.assignment()) if tp in self._fence
        ]
        # The failed fetch may have drained other partitions before it raised, moving
        # their positions past records nobody took: back to their fences, paused or not.
        for tp in candidates:
            self.consumer.seek(tp, self._fence[tp])
        wait_ms = max(500, 3 * self.settings.kafka_fetch_max_wait_ms)
        fetched: dict[TopicPartition, list[Any]] = {}
        for tp in candidates:
            start = self._fence.get(tp)
            if start is None or tp in self.consumer.paused() or self._stopping.is_set():
                continue
            self.health.beat()  # a partition at a time, each within a few fetches
            try:
                records = await read_around_unparseable(
                    self.consumer, tp, start, _READ_AROUND_RECORDS, wait_ms
                )
            except IllegalStateError:
                continue  # revoked meanwhile: its new owner reads it
            if self._fence.get(tp) != start:
                # Positioned again meanwhile (a batch of it was dropped): where that put it.
                if (fence := self._fence.get(tp)) is not None:
                    self.consumer.seek(tp, fence)
                continue
            if records:
                fetched[tp] = records
        return fetched

    async def close(self, within_seconds: float) -> None:
        """Leave the group and close every client, within ``within_seconds`` in all."""
        self._stopping.set()  # a last rebalance while leaving starts no positioning
        deadline = time.monotonic() + within_seconds
        for closing in (self.consumer.stop(), self.dead_letters.producer.stop()):
            try:
                await asyncio.wait_for(closing, max(0.1, deadline - time.monotonic()))
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning(
                    "a Kafka client did not close cleanly", extra={"error": type(exc).__name__}
                )

    async def _prepare(
        self, fetched: Mapping[TopicPartition, Sequence[Any]], generation: int
    ) -> PreparedBatch | None:
        """Decode a fetched batch, yielding between chunks so the write in flight goes on."""
        started = time.monotonic()
        messages, starts = take_unseen(fetched, self._fence)
        if not messages:
            return None
        batch = PreparedBatch(generation, started)
        batch.start_offsets = {(tp.topic, tp.partition): offset for tp, offset in starts.items()}
        batch.epochs = {tp: self._epochs.get(tp, 0) for tp in starts}
        return await decode_batch(messages, self.settings.max_message_bytes, batch)

    async def _write_batch(self, batch: PreparedBatch) -> None:
        """Write one batch, retrying transient failures. What follows its commit (the
        Kafka commit, the metrics) is not waited for here: the write is the critical
        path of the pipeline."""
        if not self._is_current(batch):
            # A rebalance came first (whoever owns them now redoes it), or a batch of
            # its partitions was dropped: they are positioned again, and it is refetched.
            self._discard(batch)
            return
        metrics.BATCH_SIZE.observe(len(batch.records))
        # The partitions, not the batch: tenacity's retry state is a reference cycle, and
        # would keep the whole batch alive until the next full collection.
        on_retry = functools.partial(self._on_write_retry, batch.partitions)
        try:
            async for attempt in retrying(self.settings, "write_batch", self._stopping, on_retry):
                with attempt:
                    plan, dead = await self._write(batch)
        except OffsetsMoved as moved:
            # Rolled back: its records were written by whoever moved the offsets (a
            # member that took over these partitions while this batch was in hand,
            # or this batch's own earlier attempt whose COMMIT landed unseen).
            log.warning(
                "stored offsets moved under a batch: dropped, partitions positioned again",
                extra={"partitions": sorted(p for _, p in moved.partitions)},
            )
            self._discard(batch)
            self._resume_after(batch)  # what its retries paused, but not these partitions
            return
        except BaseException:
            self._retrying.discard(batch.partitions)
            raise
        self.health.db_up(True)
        self.health.kafka_up(True)  # it fetched this batch and took its dead letters
        self._resume_after(batch)
        self._batches_committed += 1
        if self._batches_committed == self.settings.failpoint_kill_after_db_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        self._after_commit(CommittedBatch(batch, plan, dead))

    def _after_commit(self, committed: CommittedBatch) -> None:
        """Count a committed batch in a task of its own, and queue its offsets for Kafka.

        Neither holds up the next write. Kafka's commits go one at a time, each with the
        latest offset of every partition committed since the one before, so they only
        move forward, and a slow or absent group coordinator holds up nothing but them.
        """
        self._counting.add(asyncio.create_task(self._count(committed)))
        self._queue_for_kafka(
            {
                TopicPartition(t, p): offset
                for (t, p), offset in committed.batch.next_offsets.items()
            }
        )

    async def _count(self, committed: CommittedBatch) -> None:
        self._record_metrics(committed)

    def _queue_for_kafka(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Have Kafka's committed offsets follow ``offsets``, stored in PostgreSQL."""
        self._kafka_pending.update(offsets)
        if self._kafka_committer is None or self._kafka_committer.done():
            self._kafka_committer = asyncio.create_task(self._commit_pending_to_kafka())

    async def _commit_pending_to_kafka(self) -> None:
        """Commit what is queued, until nothing is: a failed commit is tried again every
        ``KAFKA_COMMIT_RETRY_SECONDS``, and once more when the service stops."""
        while self._kafka_pending:
            offsets, self._kafka_pending = self._kafka_pending, {}
            if await self._commit_to_kafka(offsets):
                continue
            for tp, offset in offsets.items():
                self._kafka_pending.setdefault(tp, offset)  # unless a newer one came
            if self._stopping.is_set():
                return
            metrics.count_retry("kafka_commit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), KAFKA_COMMIT_RETRY_SECONDS)

    async def _write(self, batch: PreparedBatch) -> tuple[BatchPlan, list[DeadLetter]]:
        move = OffsetsMove(self.settings.kafka_group_id, batch.start_offsets, batch.next_offsets)
        return await write_batch(self.store, batch.accepted, batch.poison, self.dead_letters, move)

    def _on_retry(self, operation: str, exc: BaseException) -> None:
        metrics.count_retry(operation, exc)
        self.health.beat()  # retrying through an outage is not being wedged
        if not isinstance(exc, KafkaError):
            self.health.db_up(False)

    def _on_write_retry(
        self, partitions: frozenset[TopicPartition], operation: str, exc: BaseException
    ) -> None:
        """A batch's write failed and will be tried again: nothing more of its partitions
        is fetched meanwhile. The other partitions go on, in writes of their own."""
        self._on_retry(operation, exc)
        self._retrying.add(partitions)
        self.consumer.pause(*(partitions & self.consumer.assignment()))
        metrics.PARTITIONS_PAUSED.set(len(self.consumer.paused()))

    async def _commit_to_kafka(self, next_offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``next_offsets`` to Kafka (those still owned); False if that failed."""
        offsets = {
            tp: offset for tp, offset in next_offsets.items() if tp in self.consumer.assignment()
        }
        if not offsets:
            return True  # none is ours any more: their new owner commits them
        self._committed.update(offsets)
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), _KAFKA_COMMIT_SECONDS)
        except (KafkaError, TimeoutError) as exc:
            # PostgreSQL holds the offsets that count; this one only feeds tools and lag.
            log.warning("Kafka offset commit failed", extra={"error": type(exc).__name__})
            return False
        return True

    def _position_soon(self) -> None:
        """Position the unpositioned partitions in the background, unless that is under way.

        Neither the rebalance listener nor the loop waits for it. The listener must not
        wait on PostgreSQL: aiokafka sends no heartbeat until it returns, so a slow read
        there (a lock, a database failing over) would cost the membership once it
        outlasted the session timeout. The loop goes on with the partitions it has. Until
        positioned, a partition is paused, and without a fence nothing of it is taken.
        """
        if self._stopping.is_set() or (self._positioner and not self._positioner.done()):
            return
        self._positioner = asyncio.create_task(self._keep_positioning())

    async def _keep_positioning(self) -> None:
        """Position until nothing is left to, retrying transient failures. One runs at a
        time: offsets read by a second one before the first one's partitions took a batch
        would rewind them. A rebalance under way ends it; the assignment restarts it."""
        try:
            async for attempt in retrying(
                self.settings, "load_offsets", self._stopping, self._on_retry
            ):
                with attempt:
                    while self._unpositioned and not self._rebalancing:
                        await self._position_unpositioned(set(self._unpositioned))
        except Exception as exc:
            if not self._stopping.is_set():
                self._positioning_failed = exc  # not transient: the loop raises it

    async def _position_unpositioned(self, partitions: set[TopicPartition]) -> None:
        generation = self._generation
        wanted = sorted(partitions & self._unpositioned & self.consumer.assignment())
        if not wanted:
            self._unpositioned &= self.consumer.assignment()
            return
        group = self.settings.kafka_group_id
        stored = await self.store.load_offsets(group, [(tp.topic, tp.partition) for tp in wanted])
        targets: dict[TopicPartition, int] = {}
        unclaimed: dict[TopicPartition, int | None] = {}
        for tp in wanted:
            if (offset := stored.get((tp.topic, tp.partition))) is not None:
                targets[tp] = offset
            else:  # first time in this group: where Kafka says, else the beginning
                unclaimed[tp] = await self.consumer.committed(tp)
        if unclaimed:
            if missing := [tp for tp, offset in unclaimed.items() if offset is None]:
                unclaimed.update(await self.consumer.beginning_offsets(missing))
            claimed = await self.store.claim_offsets(
                group, {(tp.topic, tp.partition): offset or 0 for tp, offset in unclaimed.items()}
            )
            targets.update({tp: claimed[(tp.topic, tp.partition)] for tp in unclaimed})
        if generation != self._generation or self._rebalancing:
            return  # revoked meanwhile: the next assignment positions its partitions
        # No await from here on. Records of a partition without a fence are dropped when
        # taken, so each partition gets its fence in the same step as its seek: the seek
        # goes back before whatever was dropped, and nothing after it is dropped.
        owned = self.consumer.assignment()
        for tp, offset in targets.items():
            if tp in owned:
                self.consumer.seek(tp, offset)
                self._committed[tp] = offset
                self._fence[tp] = offset
        self._unpositioned.difference_update(wanted)
        self._unpositioned &= owned
        self.consumer.resume(*(set(wanted) & owned))
        metrics.PARTITIONS_PAUSED.set(len(self.consumer.paused()))
        # Kafka's view may lag what PostgreSQL holds (a crash between the two commits, a
        # Kafka commit that failed): bring it up now, not after the next batch.
        self._queue_for_kafka({tp: offset for tp, offset in targets.items() if tp in owned})

    def _discard(self, batch: PreparedBatch) -> None:
        """Drop a batch (prepared before a rebalance, or refused by the stored offsets).
        Its records may have been fetched after its partitions were positioned again, so
        those still owned are positioned once more (from the stored offsets) before
        anything else is fetched for them, and a batch of them already taken is dropped."""
        fetched = batch.partitions
        owned = fetched & self.consumer.assignment()
        self._unpositioned |= owned
        for tp in fetched:
            self._fence.pop(tp, None)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
        self.consumer.pause(*owned)  # nothing of them is taken until positioned again
        metrics.PARTITIONS_PAUSED.set(len(self.consumer.paused()))

    def _resume_after(self, batch: PreparedBatch) -> None:
        """Resume what the retries of ``batch`` paused, except partitions that another
        batch is still retrying or that wait to be positioned."""
        self._retrying.discard(batch.partitions)
        held = self._unpositioned.union(*self._retrying)
        if resumable := set(self.consumer.paused()) - held:
            self.consumer.resume(*resumable)
            metrics.PARTITIONS_PAUSED.set(len(self.consumer.paused()))

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            committed = self._committed.get(tp)
            if highwater is not None and committed is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - committed)
                )

    def _record_metrics(self, committed: CommittedBatch) -> None:
        records, plan, dead = committed.batch.records, committed.plan, committed.dead
        topic = records[0].topic
        outcomes = Counter(v.result for v in plan.verdicts if not isinstance(v.result, Rejection))
        for outcome, count in outcomes.items():
            metrics.MESSAGES.labels(topic, str(outcome)).inc(count)
        if dead:
            metrics.MESSAGES.labels(topic, str(Outcome.DEAD_LETTERED)).inc(len(dead))
            for reason, count in Counter(r.reason for _, r in dead).items():
                metrics.DEAD_LETTERS.labels(str(reason)).inc(count)
            _log_dead_letters(dead, plan)
        now = datetime.fromtimestamp(committed.committed_at_wall, UTC)
        for verdict in plan.logged:
            metrics.EVENT_AGE.observe(max(0.0, (now - verdict.event.time).total_seconds()))
        metrics.BATCH_DURATION.observe(committed.committed_at - committed.batch.started)
        metrics.LAST_COMMIT.set(committed.committed_at_wall)
        log.debug(
            "batch committed",
            extra={
                "records": len(records),
                "dead_lettered": len(dead),
                **{str(k): n for k, n in outcomes.items()},
            },
        )


def _log_dead_letters(dead: Sequence[DeadLetter], plan: BatchPlan) -> None:
    """One line per committed dead letter: where it was, why, and its event id when it
    decoded; never its content."""
    event_ids = {
        (v.record.partition, v.record.offset): v.event.id
        for v in plan.verdicts
        if isinstance(v.result, Rejection)
    }
    for record, rejection in dead:
        event_id = event_ids.get((record.partition, record.offset))
        log.warning(
            "record dead-lettered",
            extra={
                **record.where(),
                **({"event_id": event_id} if event_id is not None else {}),
                "reason": str(rejection.reason),
                "error": rejection.error,
            },
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ConsumerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service._rebalancing = True
        self.service.health.joined(False)  # until the group settles again
        self.service._generation += 1
        # The batches being written finish and commit; none starts after this point.
        await self.service._wait_for_writes_of(None)
        for tp in revoked:
            self.service._committed.pop(tp, None)
            self.service._fence.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        self.service._unpositioned.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # First: aiokafka logs and swallows a listener's exception, and a flag left set
        # would keep every partition unpositioned while the loop looks alive.
        self.service._rebalancing = False
        metrics.REBALANCES.inc()
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )
        service = self.service
        service._unpositioned |= set(assigned)
        for tp in assigned:
            service._fence.pop(tp, None)  # until positioned, nothing of it is taken
        # Nothing is fetched for them until positioned (which resumes them).
        service.consumer.pause(*assigned)
        metrics.PARTITIONS_PAUSED.set(len(service.consumer.paused()))
        service.health.joined(True)
        service._position_soon()
