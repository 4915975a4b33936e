"""Cutting a batch where the storm guard holds a partition, and the outcomes it counts."""

from aiokafka import TopicPartition

from consumer.core.records import Reason, Rejection
from consumer.pipeline.batches import PreparedBatch, cut_batch, outcomes_by_partition
from tests.factories import record

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)
POISON = Rejection(Reason.UNDECODABLE, "value is not JSON")


def test_cut_batch_drops_a_partition_from_the_held_record_on_and_ends_it_there() -> None:
    records = [record(partition=0, offset=o) for o in range(5)] + [
        record(partition=1, offset=o) for o in range(3)
    ]
    batch = PreparedBatch(
        1,
        0.0,
        records=records,
        accepted=[(records[0], None), (records[4], None), (records[5], None)],  # type: ignore[list-item]
        poison=[(records[2], POISON), (records[3], POISON)],
        next_offsets={T0: 5, T1: 3},
        start_offsets={T0: 0, T1: 0},
    )
    cut = cut_batch(batch, {T0: 3})
    assert [(r.partition, r.offset) for r in cut.records] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    assert [r.offset for r, _ in cut.poison] == [2]
    assert [(r.partition, r.offset) for r, _ in cut.accepted] == [(0, 0), (1, 0)]
    assert cut.next_offsets == {T0: 3, T1: 3}
    assert cut.start_offsets == batch.start_offsets and cut.partitions == batch.partitions


def test_outcomes_by_partition_marks_the_dead_letters_in_offset_order() -> None:
    records = [
        record(partition=0, offset=0),
        record(partition=0, offset=1),
        record(partition=1, offset=7),
    ]
    outcomes = outcomes_by_partition(records, [(records[1], POISON)])
    assert outcomes == {T0: [(0, False), (1, True)], T1: [(7, False)]}
