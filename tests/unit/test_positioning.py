"""Positioning: each assigned partition sought to the offset stored in PostgreSQL (claimed
first, where none is) and resumed; nothing sought after a rebalance began; one run at a
time; transient failures retried, others handed to the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import asyncpg
from aiokafka import TopicPartition

from consumer.pipeline.partitions import Partitions, apply_pauses
from consumer.pipeline.positioning import Positioner
from consumer.settings import Settings
from tests.unit.fakeconsumer import FakeConsumer, until

P0, P1, P2 = (TopicPartition("t", p) for p in range(3))
GROUP = "g"
Key = tuple[str, int]


class FakeOffsets:
    """The two calls of ``Store`` that positioning makes, over a dict, as PostgreSQL
    answers them: a claim stores an offset only where none is, and returns what is."""

    def __init__(self, stored: Mapping[TopicPartition, int]) -> None:
        self.stored: dict[Key, int] = {(tp.topic, tp.partition): o for tp, o in stored.items()}
        self.loads: list[list[Key]] = []
        self.claims: list[dict[Key, int]] = []
        self.failures: list[BaseException] = []  # raised by the next loads, one each
        # Claims of other members, landing just before this member's.
        self.claimed_by_others: dict[Key, int] = {}
        self.gate: asyncio.Event | None = None  # while set, a load waits for it
        self.loading = 0
        self.most_loading = 0

    async def load_offsets(self, group_id: str, partitions: Sequence[Key]) -> dict[Key, int]:
        assert group_id == GROUP
        self.loads.append(list(partitions))
        self.loading += 1
        self.most_loading = max(self.most_loading, self.loading)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                raise self.failures.pop(0)
            return {k: self.stored[k] for k in partitions if k in self.stored}
        finally:
            self.loading -= 1

    async def claim_offsets(self, group_id: str, offsets: Mapping[Key, int]) -> dict[Key, int]:
        assert group_id == GROUP
        self.claims.append(dict(offsets))
        self.stored.update(self.claimed_by_others)
        for key, offset in offsets.items():
            self.stored.setdefault(key, offset)
        return {k: self.stored[k] for k in offsets}


class Setup:
    """A member that was just assigned ``assigned``, paused, as the listener leaves it."""

    def __init__(self, assigned: Iterable[TopicPartition], store: FakeOffsets) -> None:
        self.settings = Settings(
            kafka_group_id=GROUP, retry_initial_seconds=0.001, retry_max_seconds=0.002
        )
        self.store = store
        self.consumer = FakeConsumer(assigned)
        self.partitions = Partitions()
        self.partitions.assigned(self.consumer.assignment())
        apply_pauses(self.consumer, self.partitions)
        self.stopping = asyncio.Event()
        self.retries: list[tuple[str, str]] = []
        self.positioned: list[dict[TopicPartition, int]] = []
        self.positioner = Positioner(
            self.settings,
            store,  # type: ignore[arg-type]
            self.consumer,
            self.partitions,
            self.stopping,
            lambda op, exc: self.retries.append((op, type(exc).__name__)),
            lambda seeks: self.positioned.append(dict(seeks)),
        )


def ended(positioner: Positioner) -> bool:
    return positioner._task is not None and positioner._task.done()


async def test_assigned_partitions_are_sought_to_their_stored_offsets_and_resumed() -> None:
    member = Setup({P0, P1}, FakeOffsets({P0: 40, P1: 7}))
    member.positioner.soon()
    await until(lambda: not member.partitions.unpositioned)
    assert member.consumer.positions == {P0: 40, P1: 7}
    assert member.consumer.paused() == set()
    assert (member.partitions.fence(P0), member.partitions.fence(P1)) == (40, 7)
    # Kafka's committed offsets are brought up to what PostgreSQL holds.
    assert member.positioned == [{P0: 40, P1: 7}]
    assert member.store.claims == []  # nothing new to claim


async def test_a_partition_new_to_the_group_starts_at_kafka_s_offset_or_the_beginning_as_claimed() -> (
    None
):
    member = Setup({P0, P1, P2}, FakeOffsets({P0: 40}))
    member.consumer.kafka_committed[P1] = 12  # no offset in PostgreSQL, one in Kafka
    member.consumer.beginnings[P2] = 3  # neither: the log's beginning
    member.store.claimed_by_others = {("t", 2): 9}
    member.positioner.soon()
    await until(lambda: not member.partitions.unpositioned)
    assert member.store.claims == [{("t", 1): 12, ("t", 2): 3}]
    # Another member claimed P2 first: its claim counts, not this member's.
    assert member.consumer.positions == {P0: 40, P1: 12, P2: 9}
    assert member.consumer.paused() == set()


async def test_nothing_is_sought_or_resumed_when_a_rebalance_began_during_the_read() -> None:
    store = FakeOffsets({P0: 40})
    store.gate = asyncio.Event()
    member = Setup({P0}, store)
    member.positioner.soon()
    await until(lambda: store.loading)
    member.partitions.revoking()  # the listener, as a rebalance begins
    store.gate.set()
    await until(lambda: ended(member.positioner))
    assert member.consumer.positions == {}
    assert member.consumer.paused() == {P0}
    assert member.partitions.fence(P0) is None
    assert member.positioned == []


async def test_one_positioning_runs_at_a_time() -> None:
    store = FakeOffsets({P0: 40, P1: 7})
    store.gate = asyncio.Event()
    member = Setup({P0}, store)
    member.positioner.soon()
    await until(lambda: store.loading)
    # A second assignment's partitions while the first read is under way.
    member.consumer.assign({P0, P1})
    member.partitions.assigned({P0, P1})
    apply_pauses(member.consumer, member.partitions)
    member.positioner.soon()
    await asyncio.sleep(0.01)
    assert store.most_loading == 1
    store.gate.set()
    await until(lambda: not member.partitions.unpositioned)
    assert store.most_loading == 1
    assert member.consumer.positions == {P0: 40, P1: 7}
    assert member.consumer.paused() == set()


async def test_positioning_does_not_start_once_the_service_is_stopping() -> None:
    member = Setup({P0}, FakeOffsets({P0: 40}))
    member.stopping.set()
    member.positioner.soon()
    await asyncio.sleep(0.01)
    assert member.store.loads == []
    assert member.consumer.paused() == {P0}


async def test_a_transient_failure_is_retried_and_counted_then_the_partitions_are_positioned() -> (
    None
):
    store = FakeOffsets({P0: 40})
    store.failures = [asyncpg.exceptions.SerializationError(), OSError("connection reset")]
    member = Setup({P0}, store)
    member.positioner.soon()
    await until(lambda: not member.partitions.unpositioned)
    assert member.retries == [
        ("load_offsets", "SerializationError"),
        ("load_offsets", "OSError"),
    ]
    assert member.consumer.positions == {P0: 40}
    assert member.positioner.failed is None


async def test_a_failure_that_is_not_transient_is_left_for_the_loop_to_raise() -> None:
    store = FakeOffsets({P0: 40})
    store.failures = [ValueError("corrupt offsets")]
    member = Setup({P0}, store)
    member.positioner.soon()
    await until(lambda: member.positioner.failed is not None)
    assert isinstance(member.positioner.failed, ValueError)
    assert member.retries == []
    assert member.consumer.paused() == {P0}


async def test_a_failure_while_stopping_is_not_reported() -> None:
    store = FakeOffsets({P0: 40})
    store.gate = asyncio.Event()
    store.failures = [ValueError("pool closed")]
    member = Setup({P0}, store)
    member.positioner.soon()
    await until(lambda: store.loading)
    member.stopping.set()
    store.gate.set()
    await until(lambda: ended(member.positioner))
    assert member.positioner.failed is None
