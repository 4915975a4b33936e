"""Write lanes: the batches being written side by side, never two of one partition.

One transaction waits on PostgreSQL while the process works on another, so up to
``db_concurrent_batches`` batches are written at once. A batch waits for the batches in
hand of its partitions, so each partition's batches are written in order. A revocation
waits for all of them, so they are finished and committed before their partitions move
to another member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aiokafka import TopicPartition

from consumer.pipeline.tasks import start_task


class WriteLanes:
    """The write tasks in flight, each with the partitions of its batch."""

    def __init__(self, max_concurrent: int) -> None:
        self._max_concurrent = max_concurrent
        self._writes: dict[asyncio.Task[None], frozenset[TopicPartition]] = {}

    def __bool__(self) -> bool:
        return bool(self._writes)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._writes)

    def busy(self) -> frozenset[TopicPartition]:
        """The partitions with a batch in hand."""
        return frozenset[TopicPartition]().union(*self._writes.values())

    def start(
        self, partitions: frozenset[TopicPartition], write: Coroutine[Any, Any, None]
    ) -> None:
        """Run ``write``, a batch of ``partitions``, in a lane of its own."""
        self._writes[start_task(write, "write")] = partitions

    def reap(self) -> None:
        """Forget the finished writes; raise what one of them raised."""
        for task in [task for task in self._writes if task.done()]:
            del self._writes[task]
            task.result()

    async def wait_for(self, partitions: frozenset[TopicPartition] | None) -> None:
        """Until no batch of ``partitions`` (of any partition, if None) is being written."""
        while waiting := [
            task
            for task, theirs in self._writes.items()
            if not task.done() and (partitions is None or theirs & partitions)
        ]:
            await asyncio.wait(waiting)

    async def wait_for_room(self, partitions: frozenset[TopicPartition]) -> None:
        """Until a batch of ``partitions`` may be written: none of theirs is being written,
        and fewer than the maximum are."""
        await self.wait_for(partitions)
        while (running := [task for task in self._writes if not task.done()]) and len(
            running
        ) >= self._max_concurrent:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    def cancel(self) -> None:
        for task in self._writes:
            task.cancel()
