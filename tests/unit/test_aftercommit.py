"""After a batch commits: its events counted, its offsets sent to Kafka by one committer
that merges what queued meanwhile, retries what failed and tries once more on stopping;
the lag read from the high watermark and what is stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from consumer.core.batchplan import plan_batch
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.pipeline import aftercommit
from consumer.pipeline.aftercommit import AfterCommit
from consumer.pipeline.batches import CommittedBatch, PreparedBatch
from consumer.pipeline.partitions import Partitions
from tests.factories import accepted, created, record
from tests.unit.fakeconsumer import FakeConsumer, settle, until


class Member:
    """AfterCommit over a fake consumer that owns partitions 0 and 1 of a topic of its
    own (the metrics are the process's), both positioned at 0."""

    def __init__(self) -> None:
        self.topic = f"t-{uuid.uuid4().hex[:8]}"
        self.p0, self.p1 = TopicPartition(self.topic, 0), TopicPartition(self.topic, 1)
        self.consumer = FakeConsumer({self.p0, self.p1})
        self.partitions = Partitions()
        self.partitions.assigned(self.consumer.assignment())
        self.partitions.positioned({self.p0: 0, self.p1: 0}, self.consumer.assignment(), 0)
        self.stopping = asyncio.Event()
        self.after = AfterCommit(self.consumer, self.partitions, self.stopping)

    def count(self, name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def member() -> Iterator[Member]:
    made = Member()
    yield made
    made.after.cancel()  # a committer still retrying would count in the next test


class Message(NamedTuple):
    offset: int
    timestamp: int


def undecodable(topic: str, partition: int, offset: int) -> tuple[KafkaRecord, Rejection]:
    poison = record(b"{oops", topic=topic, partition=partition, offset=offset)
    return poison, Rejection(Reason.UNDECODABLE, "value is not JSON")


def a_batch(member: Member) -> CommittedBatch:
    """Partition 0: u1 and u2 created, then u1's event again; partition 1: a record that
    is not JSON at offset 4."""
    first = created("u1", 1, event_id="e1")
    events = [first, created("u2", 1), first]
    batch = [accepted(e, topic=member.topic, offset=i) for i, e in enumerate(events)]
    dead = [undecodable(member.topic, 1, 4)]
    prepared = PreparedBatch(
        0,
        time.monotonic(),
        records=[r for r, _ in batch] + [r for r, _ in dead],
        accepted=batch,
        next_offsets={member.p0: 3, member.p1: 5},
    )
    return CommittedBatch(prepared, plan_batch(batch, {}, (), {}), dead)


async def test_a_committed_batch_is_counted_at_once_and_its_offsets_reach_kafka(
    member: Member,
) -> None:
    dead_before = member.count("user_events_dead_letters_total", reason="undecodable")
    committed = a_batch(member)
    member.after.batch_committed(committed)

    def messages(outcome: str) -> float:
        return member.count("user_events_messages_total", topic=member.topic, outcome=outcome)

    assert [messages(o) for o in ("applied", "duplicate", "dead_lettered")] == [2, 1, 1]
    assert member.count("user_events_dead_letters_total", reason="undecodable") == dead_before + 1
    assert member.count("user_events_last_commit_timestamp_seconds") == committed.committed_at_wall
    assert member.after.last_commit == committed.committed_at_wall
    assert (member.partitions.stored(member.p0), member.partitions.stored(member.p1)) == (3, 5)
    await until(lambda: member.consumer.kafka_committed)
    assert member.consumer.commits == [{member.p0: 3, member.p1: 5}]
    member.after.reap()


async def test_kafka_commits_go_one_at_a_time_each_with_the_latest_offset_of_each_partition(
    member: Member,
) -> None:
    p0, p1, consumer = member.p0, member.p1, member.consumer
    consumer.commit_gate = asyncio.Event()
    member.after.follow({p0: 5})
    await until(lambda: consumer.commits)
    member.after.follow({p0: 9, p1: 3})
    member.after.follow({p0: 12})
    await settle()
    assert len(consumer.commits) == 1  # the others wait for the one under way
    consumer.commit_gate.set()
    await until(lambda: consumer.kafka_committed == {p0: 12, p1: 3})
    assert consumer.commits == [{p0: 5}, {p0: 12, p1: 3}]


async def test_offsets_of_partitions_no_longer_owned_are_left_to_their_new_owner(
    member: Member,
) -> None:
    p0, p1, consumer = member.p0, member.p1, member.consumer
    consumer.assign({p0})
    member.after.follow({p0: 5, p1: 7})
    await until(lambda: consumer.kafka_committed)
    member.after.follow({p1: 9})
    await settle()
    assert consumer.commits == [{p0: 5}]  # none of P1: aiokafka would refuse it
    member.after.reap()


async def test_a_failed_commit_is_tried_again_with_any_newer_offset_in_its_place(
    member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aftercommit, "KAFKA_COMMIT_RETRY_SECONDS", 0.01)
    p0, p1, consumer = member.p0, member.p1, member.consumer
    retries = member.count("user_events_retries_total", operation="kafka_commit")
    consumer.commit_gate = asyncio.Event()
    consumer.commit_failures = [KafkaConnectionError()]
    member.after.follow({p0: 5, p1: 2})
    await until(lambda: consumer.commits)
    member.after.follow({p0: 8})  # a batch committed while the first commit fails
    consumer.commit_gate.set()
    await until(lambda: consumer.kafka_committed)
    assert consumer.commits == [{p0: 5, p1: 2}, {p0: 8, p1: 2}]
    assert member.count("user_events_retries_total", operation="kafka_commit") == retries + 1
    member.after.reap()


async def test_on_stopping_a_failed_commit_is_tried_once_more_without_waiting_to_retry(
    member: Member,
) -> None:
    p0, consumer = member.p0, member.consumer
    consumer.commit_failures = [KafkaConnectionError()]
    member.after.follow({p0: 5})
    await until(lambda: consumer.commits and not consumer.commit_failures)
    started = time.monotonic()
    member.stopping.set()
    await asyncio.wait_for(member.after.finish(), aftercommit.KAFKA_COMMIT_RETRY_SECONDS / 2)
    assert time.monotonic() - started < aftercommit.KAFKA_COMMIT_RETRY_SECONDS / 2
    assert consumer.commits == [{p0: 5}, {p0: 5}]
    assert consumer.kafka_committed == {p0: 5}


async def test_once_stopping_a_commit_that_fails_again_is_given_up(member: Member) -> None:
    p0, consumer = member.p0, member.consumer
    consumer.commit_failures = [KafkaConnectionError(), KafkaConnectionError()]
    member.after.follow({p0: 5})
    await until(lambda: len(consumer.commit_failures) == 1)
    member.stopping.set()
    await asyncio.wait_for(member.after.finish(), aftercommit.KAFKA_COMMIT_RETRY_SECONDS / 2)
    assert consumer.commits == [{p0: 5}, {p0: 5}]
    assert consumer.kafka_committed == {}


async def test_a_commit_failing_for_a_reason_other_than_kafka_is_raised_to_the_loop(
    member: Member,
) -> None:
    member.consumer.commit_failures = [RuntimeError("not Kafka's")]
    member.after.follow({member.p0: 5})
    await until(lambda: member.consumer.commits)
    await settle()
    with pytest.raises(RuntimeError, match="not Kafka's"):
        member.after.reap()


async def test_the_lag_is_the_high_watermark_less_what_is_stored_and_the_oldest_record_s_age(
    member: Member,
) -> None:
    p0, p1 = member.p0, member.p1
    member.partitions.positioned({p0: 10}, member.consumer.assignment(), 0)
    member.consumer.highwaters[p0] = 15
    now = time.time()
    produced_ms = int((now - 30) * 1000)
    member.partitions.take({p0: [Message(10, produced_ms), Message(11, produced_ms + 500)]}, 0)
    assert member.after.lag_of(p0, now) == (5, round(now - produced_ms / 1000, 3))
    assert member.after.lag_of(p1, now) is None  # no high watermark known yet

    member.after.update_lag()
    labels = {"topic": member.topic, "partition": "0"}
    assert REGISTRY.get_sample_value("user_events_consumer_lag", labels) == 5
    assert (
        REGISTRY.get_sample_value("user_events_consumer_lag", labels | {"partition": "1"}) is None
    )

    member.partitions.committed({p0: 15})  # caught up
    assert member.after.lag_of(p0, now) == (0, 0.0)
    AfterCommit.forget_series({p0})
    assert REGISTRY.get_sample_value("user_events_consumer_lag", labels) is None


async def test_a_commit_failing_as_the_service_stops_is_still_tried_once_more(
    member: Member,
) -> None:
    """Stopping comes while the commit is in flight, and then it fails: the attempt made
    once stopping is still owed (a shutdown under load once left it out)."""
    p0, consumer = member.p0, member.consumer
    consumer.commit_gate, consumer.commit_failures = asyncio.Event(), [KafkaConnectionError()]
    member.after.follow({p0: 5})
    await until(lambda: consumer.commits)
    member.stopping.set()
    consumer.commit_gate.set()
    await asyncio.wait_for(member.after.finish(), aftercommit.KAFKA_COMMIT_RETRY_SECONDS / 2)
    assert consumer.commits == [{p0: 5}, {p0: 5}]
    assert consumer.kafka_committed == {p0: 5}


def test_an_event_s_age_is_seconds_from_its_time_to_the_commit_and_never_below_zero() -> None:
    at = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
    plan = plan_batch(
        [
            accepted(created("u1", at=at - timedelta(seconds=90, microseconds=500_000))),
            # The same instant two hours east: its offset counts.
            accepted(created("u2", time="2026-12-06T11:59:00+02:00")),
            # A publisher's clock ahead of ours.
            accepted(created("u3", at=at + timedelta(seconds=5))),
        ],
        {},
        [],
        {},
    )

    ages = aftercommit.event_ages(plan.logged, at.timestamp())

    assert ages == pytest.approx([90.5, 60.0, 0.0])
