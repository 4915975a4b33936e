"""The rebalance listener: a revocation waits for the writes in hand, then forgets its
partitions; an assignment pauses every partition and returns at once, leaving the
positioning (from PostgreSQL) to the background."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from consumer.edges import metrics
from consumer.edges.health import Health
from consumer.pipeline.lanes import WriteLanes
from consumer.pipeline.rebalance import RebalanceListener
from tests.unit.fakeconsumer import settle, until
from tests.unit.test_positioning import FakeOffsets, Setup, ended

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Message(NamedTuple):
    offset: int
    timestamp: int = 0


class Guard:
    """The storm guard's one call from the listener."""

    def __init__(self) -> None:
        self.forgotten: list[tuple[str, int]] = []

    def forget(self, key: tuple[str, int]) -> None:
        self.forgotten.append(key)


class Member(Setup):
    """A member owning P0 and P1, positioned from PostgreSQL as the service does it."""

    def __init__(self, stored: dict[TopicPartition, int]) -> None:
        super().__init__({P0, P1}, FakeOffsets(stored))
        self.lanes = WriteLanes(2)
        self.guard = Guard()
        self.health = Health()
        self.health.db_up(True)
        self.health.kafka_up(True)
        self.listener = RebalanceListener(
            self.consumer,
            self.partitions,
            self.lanes,
            self.positioner,
            self.guard,  # type: ignore[arg-type]
            self.health,
        )

    async def position_all(self) -> None:
        self.positioner.soon()
        await until(lambda: not self.partitions.unpositioned)


@pytest.fixture
def member() -> Iterator[Member]:
    made = Member({P0: 3, P1: 9})
    yield made
    made.positioner.cancel()
    made.lanes.cancel()


async def test_a_revocation_returns_only_once_the_writes_in_hand_are_done(member: Member) -> None:
    await member.position_all()
    gate, done = asyncio.Event(), []

    async def write() -> None:
        await gate.wait()
        member.partitions.committed({P0: 5})  # what the write's commit reports
        done.append("P0 written")

    member.lanes.start(frozenset({P0}), write())
    revoking = asyncio.create_task(member.listener.on_partitions_revoked({P0, P1}))
    await settle()
    assert not revoking.done()
    # A rebalance is under way: no batch taken before it is written, nothing positioned.
    assert member.partitions.rebalancing
    assert not member.partitions.is_current(0, {})
    assert member.health.not_ready_reason() == "not yet a member of the consumer group"
    assert member.partitions.stored(P0) == 3  # kept for the write in hand to report to

    gate.set()
    await asyncio.wait_for(revoking, 1)
    assert done == ["P0 written"]
    assert member.partitions.fence(P0) is None and member.partitions.stored(P0) is None
    assert sorted(member.guard.forgotten) == [("t", 0), ("t", 1)]


async def test_a_revocation_drops_the_revoked_partitions_series(member: Member) -> None:
    await member.position_all()
    metrics.CONSUMER_LAG.labels("t", "0").set(7)
    metrics.DLQ_GUARD_TRIPPED.labels("t", "0").set(1)
    await member.listener.on_partitions_revoked({P0})
    for name in ("user_events_consumer_lag", "user_events_dlq_guard_tripped"):
        assert REGISTRY.get_sample_value(name, {"topic": "t", "partition": "0"}) is None


async def test_an_assignment_pauses_its_partitions_and_returns_without_waiting_for_postgresql(
    member: Member,
) -> None:
    rebalances = REGISTRY.get_sample_value("user_events_rebalances_total") or 0.0
    await member.listener.on_partitions_revoked(set())
    member.store.gate = asyncio.Event()  # PostgreSQL does not answer yet
    member.consumer.assign({P0, P1})
    metrics.OFFSET_PAST_END.labels("t", "1").set(1)
    await asyncio.wait_for(member.listener.on_partitions_assigned({P0, P1}), 1)

    assert member.consumer.paused() == {P0, P1}
    assert member.partitions.unpositioned == {P0, P1}
    assert member.health.not_ready_reason() is None
    assert REGISTRY.get_sample_value("user_events_rebalances_total") == rebalances + 1
    labels = {"topic": "t", "partition": "1"}
    assert REGISTRY.get_sample_value("user_events_offset_past_end", labels) == 0
    assert REGISTRY.get_sample_value("user_events_dlq_guard_tripped", labels) == 0

    await until(lambda: member.store.loading)  # the positioning began, in the background
    member.store.gate.set()
    await until(lambda: not member.partitions.unpositioned)
    assert member.consumer.positions == {P0: 3, P1: 9}
    assert member.consumer.paused() == set()


async def test_a_partition_kept_across_a_rebalance_starts_again_from_what_is_stored(
    member: Member,
) -> None:
    await member.position_all()
    taken = member.partitions.take({P0: [Message(3), Message(4)]}, member.partitions.generation)
    assert member.partitions.fence(P0) == 5  # taken, not written: the rebalance comes first
    await member.listener.on_partitions_revoked({P0, P1})
    member.consumer.assign({P0})
    await member.listener.on_partitions_assigned({P0})
    await until(lambda: ended(member.positioner))
    assert not member.partitions.is_current(taken.generation, taken.states)
    assert member.consumer.positions == {P0: 3}
    assert member.partitions.fence(P0) == 3
    assert member.consumer.paused() == set()
