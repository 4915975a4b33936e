"""What follows a batch's commit, off the write path: metrics, logs, its span, Kafka's
offsets, lag.

PostgreSQL holds the offsets that count; the Kafka commit that follows feeds tools and
lag monitoring only. Kafka's commits go one at a time, each with the latest offset of
every partition committed since the one before, so they only move forward, and a slow
or absent group coordinator holds up nothing but them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.core.batchplan import BatchPlan, Verdict
from consumer.core.records import Outcome, Rejection
from consumer.edges import metrics
from consumer.edges.deadletter import DeadLetter
from consumer.pipeline.batches import CommittedBatch
from consumer.pipeline.batchspans import end_committed
from consumer.pipeline.parkkeeping import count_parking, log_parking
from consumer.pipeline.partitions import Partitions
from consumer.pipeline.tasks import start_task

log = logging.getLogger(__name__)

# A Kafka commit only feeds tools and the lag; it is not waited on for longer.
_KAFKA_COMMIT_SECONDS = 5.0
# While Kafka's committed offsets lag the stored ones (a failed commit, or a partition
# just positioned), a commit is tried again this often, with no new batch needed.
KAFKA_COMMIT_RETRY_SECONDS = 2.0


class AfterCommit:
    """Counts committed batches and brings Kafka's committed offsets up to them."""

    def __init__(
        self, consumer: AIOKafkaConsumer, partitions: Partitions, stopping: asyncio.Event
    ) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._stopping = stopping
        # Offsets for Kafka, merged per partition until the one committer sends them.
        self._pending: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None
        # Unix time of the last batch committed in PostgreSQL by this member.
        self.last_commit: float | None = None

    def batch_committed(self, committed: CommittedBatch) -> None:
        """Queue ``committed``'s offsets for Kafka, without waiting for the commit, and
        count it."""
        offsets = committed.batch.next_offsets
        self._partitions.committed(offsets)
        self.last_commit = committed.committed_at_wall
        self.follow(offsets)
        self._count(committed)

    def follow(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Have Kafka's committed offsets follow ``offsets``, stored in PostgreSQL."""
        self._pending.update(offsets)
        if self._committer is None or self._committer.done():
            self._committer = start_task(self._commit_pending(), "kafka_commit")

    def reap(self) -> None:
        """Raise what the Kafka committer raised, once it ended."""
        if self._committer is not None and self._committer.done():
            self._committer.result()

    async def finish(self) -> None:
        """Once stopping: one last Kafka commit of what is queued."""
        # The committer makes its last attempt once stopping, so that the offsets of the
        # batches just finished reach Kafka without a second wait on it.
        if self._committer is not None:
            await self._committer
        elif self._pending:
            await self._commit_pending()

    def cancel(self) -> None:
        if self._committer is not None:
            self._committer.cancel()

    def update_lag(self) -> None:
        """The lag of each owned partition: in records, its high watermark less what is
        stored; in seconds, the age of its oldest record not yet applied (0 if none)."""
        now = time.time()
        for tp in self._consumer.assignment():
            lag = self.lag_of(tp, now)
            if lag is not None:
                labels = (tp.topic, str(tp.partition))
                metrics.CONSUMER_LAG.labels(*labels).set(lag[0])
                metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(lag[1])

    def lag_of(self, tp: TopicPartition, now: float) -> tuple[int, float] | None:
        """``tp``'s lag in records and in seconds; None while either end is unknown."""
        lag = self._partitions.lag(tp)
        return lag.behind(self._consumer.highwater(tp), now) if lag else None

    @staticmethod
    def forget_series(partitions: Sequence[TopicPartition] | set[TopicPartition]) -> None:
        """Partitions this member no longer owns export nothing: their new owner does."""
        for tp in partitions:
            for gauge in (
                metrics.CONSUMER_LAG,
                metrics.CONSUMER_LAG_SECONDS,
                metrics.DLQ_GUARD_TRIPPED,
                metrics.OFFSET_PAST_END,
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))

    async def _commit_pending(self) -> None:
        """Commit what is queued, until nothing is: a failed commit is tried again every
        ``KAFKA_COMMIT_RETRY_SECONDS``, and once more when the service stops."""
        while self._pending:
            # Whether this attempt is the one made once stopping: if stopping comes while
            # an attempt fails, one more follows at once, as ``finish`` counts on.
            last = self._stopping.is_set()
            offsets, self._pending = self._pending, {}
            if await self._commit(offsets):
                continue
            for tp, offset in offsets.items():
                self._pending.setdefault(tp, offset)  # unless a newer one came
            if last:
                return
            if self._stopping.is_set():
                continue
            metrics.count_retry("kafka_commit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), KAFKA_COMMIT_RETRY_SECONDS)

    async def _commit(self, next_offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``next_offsets`` to Kafka (those still owned); False if that failed."""
        owned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in next_offsets.items() if tp in owned}
        if not offsets:
            return True  # none is ours any more: their new owner commits them
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), _KAFKA_COMMIT_SECONDS)
        except (KafkaError, TimeoutError) as exc:
            log.warning("Kafka offset commit failed", extra={"error": type(exc).__name__})
            return False
        return True

    def _count(self, committed: CommittedBatch) -> None:
        outcomes = record_metrics(committed)
        if committed.batch.span is not None:
            end_committed(committed.batch.span, committed, outcomes)


def record_metrics(committed: CommittedBatch) -> Counter[Outcome]:
    """The metrics and log lines of one committed batch; returns how many of its events
    were applied, duplicate or stale."""
    records, plan, dead = committed.batch.records, committed.plan, committed.dead
    topic = records[0].topic
    outcomes = Counter(v.result for v in plan.verdicts if not isinstance(v.result, Rejection))
    for outcome, count in outcomes.items():
        metrics.MESSAGES.labels(topic, str(outcome)).inc(count)
    if dead:
        metrics.MESSAGES.labels(topic, str(Outcome.DEAD_LETTERED)).inc(len(dead))
        for reason, count in Counter(r.reason for _, r in dead).items():
            metrics.DEAD_LETTERS.labels(str(reason)).inc(count)
        log_dead_letters(dead, plan)
    if plan.parked or plan.healed or plan.released:
        count_parking(plan)
        log_parking(plan)
    metrics.EVENT_AGE.observe_many(event_ages(plan.logged, committed.committed_at_wall))
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
    return outcomes


def event_ages(logged: Sequence[Verdict], now: float) -> list[float]:
    """Seconds from each logged event's ``time`` to ``now`` (never below zero: a
    publisher's clock may run ahead)."""
    return [max(0.0, now - verdict.event.time.timestamp()) for verdict in logged]


def log_dead_letters(dead: Sequence[DeadLetter], plan: BatchPlan) -> None:
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
