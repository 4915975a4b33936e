"""Which fetched records a batch takes: none from before a partition's position."""

from typing import NamedTuple

from aiokafka import TopicPartition

from consumer.pipeline.partitions import take_unseen

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Message(NamedTuple):
    offset: int


def at(*offsets: int) -> list[Message]:
    return [Message(o) for o in offsets]


def offsets(
    fetched: dict[TopicPartition, list[Message]], fence: dict[TopicPartition, int]
) -> list[int]:
    return [m.offset for m in take_unseen(fetched, fence)[0]]


def test_takes_everything_at_the_fence_and_moves_it_past_what_was_taken() -> None:
    fence = {P0: 10, P1: 0}
    taken, starts = take_unseen({P0: at(10, 11, 12), P1: at(0, 1)}, fence)
    assert [m.offset for m in taken] == [10, 11, 12, 0, 1]
    assert fence == {P0: 13, P1: 2}
    assert starts == {P0: 10, P1: 0}  # where the stored offsets must stand to commit


def test_a_batch_starts_where_the_last_one_ended_across_an_offset_gap() -> None:
    fence = {P0: 5}
    assert take_unseen({P0: at(5, 6)}, fence)[1] == {P0: 5}
    # Offset 7 is missing (a transaction marker, say): the batch still starts at 7,
    # the offset the previous batch stored.
    taken, starts = take_unseen({P0: at(8, 9)}, fence)
    assert ([m.offset for m in taken], starts, fence) == ([8, 9], {P0: 7}, {P0: 10})


def test_a_fetch_handed_over_after_a_seek_forward_gives_nothing_twice() -> None:
    # Fetched from the Kafka commit (5) while the partition was being positioned from
    # PostgreSQL (8): what precedes 8 is already applied.
    fence = {P0: 8}
    assert offsets({P0: at(5, 6, 7, 8, 9)}, fence) == [8, 9]
    # The fetcher, sought to 8, then returns 8 and 9 again: they are in the batch in hand.
    assert offsets({P0: at(8, 9, 10)}, fence) == [10]
    assert fence == {P0: 11}


def test_partitions_without_a_fence_are_not_taken() -> None:
    fence = {P1: 0}
    assert offsets({P0: at(0, 1), P1: at(3)}, fence) == [3]
    assert P0 not in fence


def test_an_empty_or_wholly_seen_fetch_leaves_the_fence_where_it_was() -> None:
    fence = {P0: 4}
    assert take_unseen({P0: at(), P1: at(1)}, fence) == ([], {})
    assert take_unseen({P0: at(1, 2, 3)}, fence) == ([], {})
    assert fence == {P0: 4}
