"""Write lanes: never two batches of one partition in flight, never more than the
maximum, each partition's batches written in the order they were started."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest
from aiokafka import TopicPartition

from consumer.pipeline.lanes import WriteLanes
from tests.unit.fakeconsumer import settle

P0, P1, P2 = (TopicPartition("t", p) for p in range(3))


async def held(gate: asyncio.Event, done: list[str] | None = None, name: str = "") -> None:
    await gate.wait()
    if done is not None:
        done.append(name)


async def test_a_batch_waits_for_the_batch_of_its_partition_in_flight() -> None:
    lanes, gate, done = WriteLanes(4), asyncio.Event(), list[str]()
    lanes.start(frozenset({P0}), held(gate, done, "first"))
    waiting = asyncio.create_task(lanes.wait_for_room(frozenset({P0, P1})))
    await settle()
    assert not waiting.done()
    gate.set()
    await asyncio.wait_for(waiting, 1)
    assert done == ["first"]


async def test_a_batch_of_other_partitions_is_written_beside_it() -> None:
    lanes, gate = WriteLanes(4), asyncio.Event()
    lanes.start(frozenset({P0}), held(gate))
    await asyncio.wait_for(lanes.wait_for_room(frozenset({P1})), 1)
    lanes.start(frozenset({P1}), held(gate))
    assert lanes.busy() == {P0, P1}
    gate.set()
    await lanes.wait_for(None)


async def test_no_more_than_the_maximum_are_written_at_once() -> None:
    lanes, first, second = WriteLanes(2), asyncio.Event(), asyncio.Event()
    lanes.start(frozenset({P0}), held(first))
    lanes.start(frozenset({P1}), held(second))
    waiting = asyncio.create_task(lanes.wait_for_room(frozenset({P2})))
    await settle()
    assert not waiting.done()
    second.set()  # either one ending makes room
    await asyncio.wait_for(waiting, 1)
    first.set()
    await lanes.wait_for(None)


async def test_waiting_for_some_partitions_does_not_wait_for_the_others() -> None:
    lanes, slow, quick = WriteLanes(4), asyncio.Event(), asyncio.Event()
    lanes.start(frozenset({P0}), held(slow))
    lanes.start(frozenset({P1, P2}), held(quick))
    of_p2 = asyncio.create_task(lanes.wait_for(frozenset({P2})))
    of_all = asyncio.create_task(lanes.wait_for(None))
    await settle()
    assert not of_p2.done()
    quick.set()
    await asyncio.wait_for(of_p2, 1)
    await settle()
    assert not of_all.done()  # P0's batch is still being written
    slow.set()
    await asyncio.wait_for(of_all, 1)


async def test_reap_forgets_finished_writes_and_raises_what_one_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("write failed")

    lanes, gate = WriteLanes(4), asyncio.Event()
    lanes.start(frozenset({P0}), held(gate))
    lanes.start(frozenset({P1}), fails())
    await settle()
    with pytest.raises(RuntimeError, match="write failed"):
        lanes.reap()
    assert lanes.busy() == {P0}  # the one still running is kept
    gate.set()
    await settle()
    lanes.reap()
    assert not lanes
    assert lanes.busy() == frozenset()


async def test_cancel_ends_every_write_in_flight() -> None:
    lanes, gate = WriteLanes(4), asyncio.Event()
    lanes.start(frozenset({P0}), held(gate))
    lanes.start(frozenset({P1}), held(gate))
    tasks = lanes.tasks
    lanes.cancel()
    await asyncio.wait(tasks)
    assert all(task.cancelled() for task in tasks)


@pytest.mark.parametrize("seed", range(20))
async def test_as_the_loop_drives_them_partitions_never_overlap_and_stay_in_order(
    seed: int,
) -> None:
    """Batches of random partitions, each taking a random number of loop turns, started
    as the loop starts them: after ``wait_for_room``."""
    rng = random.Random(seed)
    partitions = [TopicPartition("t", p) for p in range(4)]
    maximum = rng.randint(1, 3)
    lanes = WriteLanes(maximum)
    in_flight: set[TopicPartition] = set()
    running = 0
    most = 0
    written: dict[TopicPartition, list[int]] = defaultdict(list)

    async def write(number: int, theirs: frozenset[TopicPartition], turns: int) -> None:
        nonlocal running, most
        assert not theirs & in_flight, f"batch {number} overlaps {theirs & in_flight}"
        in_flight.update(theirs)
        running += 1
        most = max(most, running)
        for _ in range(turns):
            await asyncio.sleep(0)
        for tp in theirs:
            written[tp].append(number)
        in_flight.difference_update(theirs)
        running -= 1

    started: dict[TopicPartition, list[int]] = defaultdict(list)
    for number in range(60):
        theirs = frozenset(rng.sample(partitions, rng.randint(1, 3)))
        await lanes.wait_for_room(theirs)
        lanes.reap()
        lanes.start(theirs, write(number, theirs, rng.randint(0, 5)))
        for tp in theirs:
            started[tp].append(number)
    await lanes.wait_for(None)
    lanes.reap()
    assert most <= maximum
    assert written == started
