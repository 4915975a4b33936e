"""A stand-in for the part of ``AIOKafkaConsumer`` the loop's parts call, without a broker.

It keeps what aiokafka 0.14 keeps and refuses what it refuses: an assignment replaced as
a whole on each rebalance (every partition unpaused and unpositioned again), pause,
resume and seek only of assigned partitions (``IllegalStateError``), seek only to an
offset of 0 or more (``ValueError``), commit only of assigned partitions, and a high
watermark only of an assigned partition. Commits and offset look-ups answer from dicts a
test fills; ``commit`` can be held on a gate or made to fail. Below it, two ways to let
the background tasks of the parts under test run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError


class FakeConsumer:
    def __init__(self, assigned: Iterable[TopicPartition] = ()) -> None:
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._paused: set[TopicPartition] = set()
        # Where each assigned partition's next fetch starts, once sought.
        self.positions: dict[TopicPartition, int] = {}
        # Kafka's committed offsets of the group, as ``committed`` reads them.
        self.kafka_committed: dict[TopicPartition, int] = {}
        self.beginnings: dict[TopicPartition, int] = {}
        self.highwaters: dict[TopicPartition, int] = {}
        # Each ``commit`` call's offsets, in order, whether it succeeded or not.
        self.commits: list[dict[TopicPartition, int]] = []
        # Raised by the next commits, one each, before anything is committed.
        self.commit_failures: list[BaseException] = []
        # While set, ``commit`` waits for it to be set (after recording its call).
        self.commit_gate: asyncio.Event | None = None
        self.assign(assigned)

    # --- what a test does: the group coordinator's part --------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """A rebalance ended with ``partitions``: a new assignment, each partition fresh."""
        self._assigned = frozenset(partitions)
        self._paused.clear()
        self.positions.clear()

    # --- what the code calls ------------------------------------------------------------

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._check_assigned(tp)
            self._paused.add(tp)

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._check_assigned(tp)
            self._paused.discard(tp)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("Offset must be a positive integer")
        self._check_assigned(partition)
        self.positions[partition] = offset

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.kafka_committed.get(partition)

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {tp: self.beginnings.get(tp, 0) for tp in partitions}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        for tp in offsets:
            if tp not in self._assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        if self.commit_failures:
            raise self.commit_failures.pop(0)
        self.kafka_committed.update(offsets)

    def highwater(self, partition: TopicPartition) -> int | None:
        assert partition in self._assigned, "Partition is not assigned"
        return self.highwaters.get(partition)

    def _check_assigned(self, tp: TopicPartition) -> None:
        if not isinstance(tp, TopicPartition):
            raise TypeError("partitions must be TopicPartition namedtuples")
        if tp not in self._assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")


async def settle() -> None:
    """Long enough for every task that waits on nothing but the loop to run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def until(condition: Callable[[], Any], seconds: float = 2.0) -> None:
    """Until ``condition()`` holds, letting the loop run meanwhile."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)
