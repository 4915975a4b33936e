"""The partition state and each of its transitions, without a broker: what keeps effects
exactly once across rebalances, drops and retries."""

from typing import NamedTuple

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.pipeline.partitions import Partitions, Taken

P0, P1, P2 = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)


class Message(NamedTuple):
    offset: int


def at(*offsets: int) -> list[Message]:
    return [Message(o) for o in offsets]


def positioned(targets: dict[TopicPartition, int]) -> Partitions:
    """A member that was assigned ``targets``' partitions and positioned them there."""
    state = Partitions()
    state.assigned(targets)
    state.positioned(targets, owned=targets)
    return state


def test_a_new_member_is_rebalancing_with_nothing_to_take() -> None:
    state = Partitions()
    assert state.rebalancing
    assert state.unpositioned == frozenset()
    assert state.take({P0: at(0, 1)}, state.generation).messages == []


def test_assigned_partitions_are_paused_and_unpositioned_until_positioned() -> None:
    state = Partitions()
    assert state.assigned({P0, P1}) == {P0, P1}  # the ones to pause
    assert not state.rebalancing
    assert state.unpositioned == {P0, P1}
    assert state.fence(P0) is None
    # Nothing of an unpositioned partition is taken, whatever a fetch returns.
    assert state.take({P0: at(0), P1: at(0)}, state.generation).messages == []


def test_to_position_lists_the_owned_unpositioned_in_order_and_forgets_the_rest() -> None:
    state = Partitions()
    state.assigned({P2, P0, P1})
    assert state.to_position(owned={P0, P2}) == [P0, P2]
    assert state.unpositioned == {P0, P2}


def test_positioned_sets_the_fence_and_the_stored_offset_and_says_where_to_seek() -> None:
    state = Partitions()
    state.assigned({P0, P1})
    seeks = state.positioned({P0: 7, P1: 0}, owned={P0, P1})
    assert seeks == {P0: 7, P1: 0}
    assert (state.fence(P0), state.fence(P1)) == (7, 0)
    assert (state.stored(P0), state.stored(P1)) == (7, 0)
    assert state.unpositioned == frozenset()


def test_a_partition_lost_while_its_offsets_were_read_is_not_positioned() -> None:
    state = Partitions()
    state.assigned({P0, P1})
    seeks = state.positioned({P0: 7, P1: 3}, owned={P0})
    assert seeks == {P0: 7}
    assert state.fence(P1) is None and state.stored(P1) is None
    assert state.unpositioned == frozenset()


def test_take_moves_the_fence_past_what_it_took_and_drops_what_is_below_it() -> None:
    state = positioned({P0: 10, P1: 0})
    taken = state.take({P0: at(8, 9, 10, 11), P1: at(0)}, state.generation)
    assert [m.offset for m in taken.messages] == [10, 11, 0]
    assert taken.starts == {P0: 10, P1: 0}
    assert taken.epochs == {P0: 0, P1: 0}
    assert (state.fence(P0), state.fence(P1)) == (12, 1)
    # A fetch handed over after the fence moved repeats nothing.
    assert state.take({P0: at(10, 11)}, state.generation).messages == []


def test_a_batch_stays_current_until_a_revocation_or_a_drop_of_its_partitions() -> None:
    state = positioned({P0: 0, P1: 0})
    taken = state.take({P0: at(0)}, state.generation)
    assert state.is_current(taken.generation, taken.epochs)
    state.dropped({P1}, owned={P0, P1})  # another partition's batch: no matter
    assert state.is_current(taken.generation, taken.epochs)
    state.dropped({P0}, owned={P0, P1})
    assert not state.is_current(taken.generation, taken.epochs)


def test_revoke_while_writing_makes_every_batch_in_hand_stale_and_forgets_the_revoked() -> None:
    state = positioned({P0: 0, P1: 5})
    writing = state.take({P0: at(0, 1)}, state.generation)  # being written
    waiting = state.take({P1: at(5)}, state.generation)  # decoded, waiting for a lane
    state.revoking()
    assert state.rebalancing
    # The batch being written finishes (the listener waits for it); no batch taken
    # before the revocation starts after it.
    assert not state.is_current(writing.generation, writing.epochs)
    assert not state.is_current(waiting.generation, waiting.epochs)
    state.committed({P0: 2})
    state.revoked({P0, P1})
    assert state.fence(P0) is None and state.stored(P0) is None
    assert state.fence(P1) is None
    assert state.take({P0: at(2), P1: at(6)}, state.generation).messages == []


def test_a_fetch_that_spans_a_rebalance_belongs_to_the_generation_before_it() -> None:
    state = positioned({P0: 0})
    generation = state.generation  # when the fetch began
    state.revoking()
    state.revoked({P0})
    state.assigned({P0})
    state.positioned({P0: 0}, owned={P0})
    taken = state.take({P0: at(0)}, generation)
    assert taken.messages and not state.is_current(taken.generation, taken.epochs)


def test_partitions_kept_across_a_rebalance_are_positioned_again() -> None:
    state = positioned({P0: 4, P1: 9})
    state.revoking()
    state.revoked({P1})
    assert state.assigned({P0}) == {P0}
    assert state.fence(P0) is None  # until positioned from the stored offsets again
    assert state.unpositioned == {P0}


def test_drop_after_offsets_moved_positions_the_owned_partitions_again() -> None:
    state = positioned({P0: 0, P1: 0})
    first = state.take({P0: at(0, 1), P1: at(0)}, state.generation)
    second = state.take({P0: at(2, 3)}, state.generation)  # next batch of P0, waiting
    # The first batch's compare-and-set failed (OffsetsMoved): it is dropped, and P1
    # was revoked meanwhile.
    to_pause = state.dropped(first.starts, owned={P0})
    assert to_pause == {P0}
    assert state.unpositioned == {P0}
    assert state.fence(P0) is None and state.fence(P1) is None
    # The batch taken after it is dropped too, not written over the moved offsets.
    assert not state.is_current(second.generation, second.epochs)
    assert state.take({P0: at(4)}, state.generation).messages == []
    # Positioned again from what the stored offsets say now.
    assert state.to_position(owned={P0}) == [P0]
    assert state.positioned({P0: 4}, owned={P0}) == {P0: 4}
    again = state.take({P0: at(2, 3, 4, 5)}, state.generation)
    assert [m.offset for m in again.messages] == [4, 5]
    assert state.is_current(again.generation, again.epochs)
    assert again.epochs == {P0: 1}


def test_a_retry_holds_its_partitions_until_it_ends() -> None:
    state = positioned({P0: 0, P1: 0, P2: 0})
    state.retrying(frozenset({P0}))
    state.retrying(frozenset({P1}))
    # P0's batch committed: it is resumed, P1 still retries and stays paused.
    assert state.retry_ended(frozenset({P0}), paused={P0, P1}) == {P0}
    assert state.retry_ended(frozenset({P1}), paused={P1}) == {P1}


def test_the_end_of_a_retry_resumes_nothing_that_waits_to_be_positioned() -> None:
    state = positioned({P0: 0, P1: 0})
    state.retrying(frozenset({P0, P1}))
    state.dropped({P1}, owned={P0, P1})  # another batch of P1 was refused meanwhile
    assert state.retry_ended(frozenset({P0, P1}), paused={P0, P1}) == {P0}


def test_committed_moves_the_stored_offset_of_owned_partitions_only() -> None:
    state = positioned({P0: 0})
    state.committed({P0: 10, P1: 3})
    assert state.stored(P0) == 10
    assert state.stored(P1) is None  # not ours: no lag is reported for it


def test_positioned_among_keeps_the_partitions_with_a_fence() -> None:
    state = positioned({P0: 0})
    state.assigned({P1})
    state.positioned({P0: 0}, owned={P0, P1})
    assert state.positioned_among([P0, P1, P2]) == [P0]


@settings(max_examples=1000)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["take", "take", "write", "drop", "rebalance", "position"]),
            st.sampled_from([P0, P1]),
            st.integers(0, 5),
        ),
        max_size=40,
    )
)
def test_every_batch_written_starts_where_the_stored_offsets_stand(
    steps: list[tuple[str, TopicPartition, int]],
) -> None:
    """Whatever the order of fetches, writes, drops and rebalances, a batch still current
    when it is written starts exactly where the stored offsets stand (the compare-and-set
    never refuses it): nothing written twice, nothing skipped."""
    state = Partitions()
    stored = {P0: 0, P1: 0}  # PostgreSQL
    owned: set[TopicPartition] = set()
    pending: list[tuple[Taken, dict[TopicPartition, int]]] = []  # taken, in order

    def write_oldest() -> None:
        batch, ends = pending.pop(0)
        if state.is_current(batch.generation, batch.epochs):
            for tp, start in batch.starts.items():
                assert stored[tp] == start
                stored[tp] = ends[tp]
            state.committed(ends)

    for action, tp, count in steps:
        if action == "take" and (fence := state.fence(tp)) is not None:
            fetched = {tp: at(*range(max(0, fence - 2), fence + count))}
            taken = state.take(fetched, state.generation)
            if taken.messages:
                pending.append((taken, {tp: taken.messages[-1].offset + 1}))
        elif action == "write" and pending:
            write_oldest()
        elif action == "drop" and pending:  # refused, as if by OffsetsMoved
            batch, _ = pending.pop(0)
            state.dropped(batch.starts, owned)
        elif action == "rebalance":
            state.revoking()
            while pending:  # the listener waits for the writes; none starts after
                write_oldest()
            state.revoked(owned)
            owned = {P0, P1} if count % 2 else {tp}
            state.assigned(owned)
            if count > 1:  # positioned at once, or later by a "position" step
                state.positioned({p: stored[p] for p in state.to_position(owned)}, owned)
        elif action == "position":
            state.positioned({p: stored[p] for p in state.to_position(owned)}, owned)
