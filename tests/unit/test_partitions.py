"""The partition state and each of its transitions, without a broker: what keeps effects
exactly once across rebalances, drops and retries."""

from typing import NamedTuple

from aiokafka import TopicPartition
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from consumer.pipeline.partitions import Partitions, Taken, apply_pauses
from tests.unit.fakeconsumer import FakeConsumer

P0, P1, P2 = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)


class Message(NamedTuple):
    offset: int
    timestamp: int = 1_700_000_000_000


def at(*offsets: int) -> list[Message]:
    return [Message(o) for o in offsets]


def positioned(targets: dict[TopicPartition, int]) -> Partitions:
    """A member that was assigned ``targets``' partitions and positioned them there."""
    state = Partitions()
    state.assigned(targets)
    state.positioned(targets, owned=targets, generation=state.generation)
    return state


def test_a_new_member_is_rebalancing_with_nothing_to_take() -> None:
    state = Partitions()
    assert state.rebalancing
    assert state.unpositioned == frozenset()
    assert state.take({P0: at(0, 1)}, state.generation).messages == []


def test_assigned_partitions_are_paused_and_unpositioned_until_positioned() -> None:
    state = Partitions()
    state.assigned({P0, P1})
    assert state.waiting({P0, P1}) == {P0, P1}  # the ones to pause
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
    seeks = state.positioned({P0: 7, P1: 0}, owned={P0, P1}, generation=state.generation)
    assert seeks == {P0: 7, P1: 0}
    assert (state.fence(P0), state.fence(P1)) == (7, 0)
    assert (state.stored(P0), state.stored(P1)) == (7, 0)
    assert state.unpositioned == frozenset()


def test_a_partition_no_longer_owned_when_its_offsets_arrive_is_not_positioned() -> None:
    state = Partitions()
    state.assigned({P0, P1})
    seeks = state.positioned({P0: 7, P1: 3}, owned={P0}, generation=state.generation)
    assert seeks == {P0: 7}
    assert state.fence(P1) is None and state.stored(P1) is None
    assert state.unpositioned == frozenset()


def test_offsets_read_before_a_rebalance_position_nothing() -> None:
    state = Partitions()
    state.assigned({P0})
    read_in = state.generation  # the stored offsets are read...
    state.revoking()  # ...while the group rebalances
    assert state.positioned({P0: 5}, owned={P0}, generation=read_in) == {}
    state.revoked({P0})
    state.assigned({P0})
    # Read in the past generation, they still position nothing: the writes in hand may
    # have committed since, so the offsets are read again.
    assert state.positioned({P0: 5}, owned={P0}, generation=read_in) == {}
    assert state.fence(P0) is None and state.unpositioned == {P0}
    assert state.positioned({P0: 9}, owned={P0}, generation=state.generation) == {P0: 9}


def test_take_moves_the_fence_past_what_it_took_and_drops_what_is_below_it() -> None:
    state = positioned({P0: 10, P1: 0})
    taken = state.take({P0: at(8, 9, 10, 11), P1: at(0)}, state.generation)
    assert [m.offset for m in taken.messages] == [10, 11, 0]
    assert taken.starts == {P0: 10, P1: 0}
    assert taken.states == {P0: state.state(P0), P1: state.state(P1)}
    assert (state.fence(P0), state.fence(P1)) == (12, 1)
    # A fetch handed over after the fence moved repeats nothing.
    assert state.take({P0: at(10, 11)}, state.generation).messages == []


def test_a_batch_stays_current_until_a_revocation_or_a_drop_of_its_partitions() -> None:
    state = positioned({P0: 0, P1: 0})
    taken = state.take({P0: at(0)}, state.generation)
    assert state.is_current(taken.generation, taken.states)
    state.dropped({P1}, owned={P0, P1})  # another partition's batch: no matter
    assert state.is_current(taken.generation, taken.states)
    state.dropped({P0}, owned={P0, P1})
    assert not state.is_current(taken.generation, taken.states)


def test_revoke_while_writing_commits_the_write_in_hand_and_drops_the_waiting_batch() -> None:
    state = positioned({P0: 0, P1: 5})
    writing = state.take({P0: at(0, 1)}, state.generation)  # in a write lane
    waiting = state.take({P1: at(5)}, state.generation)  # decoded, waiting for a lane
    assert state.is_current(writing.generation, writing.states)  # checked as it started
    state.revoking()
    assert state.rebalancing
    # The listener waits for the write in hand, which commits...
    state.committed({P0: 2})
    assert state.stored(P0) == 2
    # ...and the batch that waited is no longer current when its turn comes: dropped.
    assert not state.is_current(waiting.generation, waiting.states)
    assert state.dropped(waiting.starts, owned={P0, P1}) == {P1}
    state.revoked({P0, P1})
    assert state.fence(P0) is None and state.stored(P0) is None
    assert state.fence(P1) is None and state.unpositioned == frozenset()
    assert state.take({P0: at(2), P1: at(6)}, state.generation).messages == []


def test_a_fetch_that_spans_a_rebalance_belongs_to_the_generation_before_it() -> None:
    state = positioned({P0: 0})
    generation = state.generation  # when the fetch began
    state.revoking()
    state.revoked({P0})
    state.assigned({P0})
    state.positioned({P0: 0}, owned={P0}, generation=state.generation)
    taken = state.take({P0: at(0)}, generation)
    assert taken.messages and not state.is_current(taken.generation, taken.states)


def test_partitions_kept_across_a_rebalance_are_positioned_again() -> None:
    state = positioned({P0: 4, P1: 9})
    state.revoking()
    state.revoked({P0, P1})
    state.assigned({P0})
    assert state.waiting({P0, P1}) == {P0}
    assert state.fence(P0) is None  # until positioned from the stored offsets again
    assert state.unpositioned == {P0}


def test_drop_after_offsets_moved_positions_the_partition_again_and_drops_its_next_batch() -> None:
    state = positioned({P0: 0, P1: 0})
    first = state.take({P0: at(0, 1)}, state.generation)  # written, retried once
    second = state.take({P0: at(2, 3)}, state.generation)  # next batch of P0, waiting
    state.retrying(frozenset(first.starts))
    # The retry's compare-and-set finds the offsets moved (the first attempt's COMMIT
    # landed unseen): the batch is dropped, then its retries end.
    assert state.dropped(first.starts, owned={P0, P1}) == {P0}
    state.retry_ended(frozenset(first.starts))
    assert state.waiting({P0, P1}) == {P0}  # not resumed: to position
    assert state.unpositioned == {P0} and state.fence(P0) is None
    assert state.fence(P1) == 0  # the other partition goes on
    # The batch taken after it is not written over the moved offsets: dropped in turn.
    assert not state.is_current(second.generation, second.states)
    state.dropped(second.starts, owned={P0, P1})
    assert state.take({P0: at(4)}, state.generation).messages == []
    # Positioned again from what the stored offsets say now.
    assert state.to_position(owned={P0, P1}) == [P0]
    assert state.positioned({P0: 2}, owned={P0, P1}, generation=state.generation) == {P0: 2}
    again = state.take({P0: at(0, 1, 2, 3)}, state.generation)
    assert [m.offset for m in again.messages] == [2, 3]
    assert again.states[P0] is state.state(P0)
    assert again.states[P0] not in (first.states[P0], second.states[P0])
    assert state.is_current(again.generation, again.states)


def test_a_retry_holds_its_partitions_until_it_ends() -> None:
    state = positioned({P0: 0, P1: 0, P2: 0})
    state.retrying(frozenset({P0}))
    state.retrying(frozenset({P1}))
    assert state.waiting({P0, P1, P2}) == {P0, P1}
    # P0's batch committed: it is resumed, P1 still retries and stays paused.
    state.retry_ended(frozenset({P0}))
    assert state.waiting({P0, P1, P2}) == {P1}
    state.retry_ended(frozenset({P1}))
    assert state.waiting({P0, P1, P2}) == set()


def test_the_end_of_a_retry_resumes_nothing_that_waits_to_be_positioned() -> None:
    state = positioned({P0: 0, P1: 0})
    state.retrying(frozenset({P0, P1}))
    state.dropped({P0, P1}, owned={P0, P1})  # the retried batch was refused
    state.retry_ended(frozenset({P0, P1}))
    assert state.waiting({P0, P1}) == {P0, P1}
    # Another partition waiting to be positioned stays paused when a retry of a
    # different one ends.
    state.positioned({P0: 0, P1: 0}, owned={P0, P1}, generation=state.generation)
    state.retrying(frozenset({P0}))
    state.dropped({P1}, owned={P0, P1})
    state.retry_ended(frozenset({P0}))
    assert state.waiting({P0, P1}) == {P1}


def test_committed_moves_the_stored_offset_of_owned_partitions_only() -> None:
    state = positioned({P0: 0})
    state.committed({P0: 10, P1: 3})
    assert state.stored(P0) == 10
    assert state.stored(P1) is None  # not ours: no lag is reported for it


def test_positioned_among_keeps_the_partitions_with_a_fence() -> None:
    state = Partitions()
    state.assigned({P0, P1})
    state.positioned({P0: 0}, owned={P0, P1}, generation=state.generation)
    assert state.positioned_among([P0, P1, P2]) == [P0]


# The two paths random lists rarely reach, named so that every run takes them: a batch
# taken behind one that another member's write refused, and offsets read before a
# rebalance that gave the partition away and back.
_BEHIND_A_REFUSED_BATCH = [
    ("rebalance", P0, 0),
    ("read", P0, 0),
    ("apply", P0, 0),
    ("take", P0, 2),
    ("take", P0, 2),
    ("start", P0, 0),
    ("moved", P0, 2),
    ("start", P0, 0),
    ("commit", P0, 0),
]
_READ_BEFORE_A_REBALANCE = [
    ("rebalance", P0, 1),
    ("read", P0, 0),
    ("rebalance", P1, 0),
    ("elsewhere", P0, 3),
    ("rebalance", P0, 1),
    ("apply", P0, 0),
    ("take", P0, 2),
    ("start", P0, 0),
    ("commit", P0, 0),
]


@settings(max_examples=1000)
@example(_BEHIND_A_REFUSED_BATCH)
@example(_READ_BEFORE_A_REBALANCE)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    *("take", "take", "start", "commit", "moved"),
                    *("elsewhere", "rebalance", "read", "apply"),
                ]
            ),
            st.sampled_from([P0, P1]),
            st.integers(0, 5),
        ),
        max_size=50,
    )
)
def test_every_batch_written_starts_where_the_stored_offsets_stand(
    steps: list[tuple[str, TopicPartition, int]],
) -> None:
    """The loop, modelled step by step (fetch and take, a batch starting in its lane or
    dropped there, its commit or its refusal, rebalances, other members consuming what
    this one lost, positioning read then applied): every batch the state lets start
    after a refusal or a rebalance starts exactly where the stored offsets stand, so the
    compare-and-set commits it: nothing written twice, nothing skipped."""
    state = Partitions()
    stored = {P0: 0, P1: 0}  # PostgreSQL
    owned: set[TopicPartition] = set()
    waiting: list[tuple[Taken, dict[TopicPartition, int]]] = []  # decoded, in order
    writing: tuple[Taken, dict[TopicPartition, int]] | None = None  # one lane
    read: tuple[int, dict[TopicPartition, int]] | None = None  # offsets read, not applied

    def commit() -> None:
        nonlocal writing
        assert writing is not None
        batch, ends = writing
        for tp, start in batch.starts.items():
            assert stored[tp] == start  # never a gap, never an overlap
            stored[tp] = ends[tp]
        state.committed(ends)
        writing = None

    for action, tp, count in steps:
        if action == "take" and (fence := state.fence(tp)) is not None:
            fetched = {tp: at(*range(max(0, fence - 2), fence + count))}
            taken = state.take(fetched, state.generation)
            if taken.messages:
                waiting.append((taken, {tp: taken.messages[-1].offset + 1}))
        elif action == "start" and waiting and writing is None:
            batch, ends = waiting.pop(0)
            if state.is_current(batch.generation, batch.states):
                writing = (batch, ends)
            else:
                state.dropped(batch.starts, owned)
        elif action == "commit" and writing is not None:
            commit()
        elif action == "moved" and writing is not None:
            # The compare-and-set refuses the batch, which is dropped: its own first
            # attempt's COMMIT landed unseen, or a member that took the partition over
            # while this one was evicted wrote past it.
            batch, ends = writing
            for p, end in ends.items():
                stored[p] = end if count % 2 else end + count
            state.dropped(batch.starts, owned)
            writing = None
        elif action == "elsewhere" and tp not in owned:
            stored[tp] += count  # another member consumes a partition this one lost
        elif action == "rebalance":
            state.revoking()
            if writing is not None:  # the listener waits for the write in hand
                commit()
            state.revoked(owned)
            owned = {P0, P1} if count % 2 else {tp}
            state.assigned(owned)
        elif action == "read":
            read = (state.generation, {p: stored[p] for p in state.to_position(owned)})
        elif action == "apply" and read is not None:
            state.positioned(read[1], owned, generation=read[0])
            read = None


def test_a_held_partition_is_neither_taken_positioned_nor_resumed() -> None:
    state = positioned({P0: 0, P1: 0})
    waiting = state.take({P0: at(0, 1, 2)}, state.generation)
    state.hold(P0, 1, timestamp_ms=1_700_000_000_000)
    assert state.held == {P0: 1}
    assert state.fence(P0) is None
    assert state.take({P0: at(1, 2)}, state.generation).messages == []
    # A batch of it taken before is dropped, without queueing it for positioning.
    assert not state.is_current(waiting.generation, waiting.states)
    assert state.dropped(waiting.starts, owned={P0, P1}) == set()
    assert state.unpositioned == frozenset()
    state.retrying(frozenset({P1}))
    state.retry_ended(frozenset({P1}))
    assert state.waiting({P0, P1}) == {P0}
    # Its lag in seconds counts from the record it is held at.
    assert state.oldest_unapplied(P0) == 1_700_000_000.0
    # A revocation ends the hold: whoever owns it next counts afresh.
    state.revoking()
    state.revoked({P0, P1})
    assert state.held == {}


def test_the_oldest_unapplied_record_is_the_first_of_the_oldest_batch_in_hand() -> None:
    state = positioned({P0: 0})
    assert state.oldest_unapplied(P0) is not None  # when it was positioned, till taken
    state.take({P0: [Message(0, 1_000), Message(1, 2_000)]}, state.generation)
    state.take({P0: [Message(2, 3_000)]}, state.generation)
    assert state.oldest_unapplied(P0) == 1.0
    state.committed({P0: 2})
    assert state.oldest_unapplied(P0) == 3.0
    state.committed({P0: 3})
    assert state.oldest_unapplied(P0) is not None  # when it last moved


def test_a_partition_whose_next_offset_is_past_its_high_watermark_is_found() -> None:
    state = positioned({P0: 50, P1: 3, P2: 9})
    # P0's log ends before its stored offset; P1 is caught up; P2's end is not known yet.
    assert state.beyond_the_end({P0: 3, P1: 3, P2: None}) == {P0: (50, 3)}


def test_a_partition_with_a_batch_in_hand_is_not_judged_past_the_end() -> None:
    state = positioned({P0: 0})
    state.take({P0: at(0, 1, 2)}, state.generation)  # its fence is 3, the batch not committed
    assert state.beyond_the_end({P0: 2}) == {}


def test_a_partition_held_past_the_end_is_neither_taken_nor_resumed_nor_positioned() -> None:
    state = positioned({P0: 50, P1: 0})
    generation = state.generation
    state.hold_past_end(P0, 50, 3)
    assert state.past_end == {P0: (50, 3)}
    assert state.fence(P0) is None
    assert state.take({P0: at(50, 51)}, generation).messages == []
    state.retry_ended(frozenset({P1}))
    assert state.waiting({P0, P1}) == {P0}
    assert state.dropped({P0}, owned={P0, P1}) == set()  # stays held, not positioned again
    assert state.beyond_the_end({P0: 3}) == {}  # found once
    state.revoking()
    state.revoked({P0})
    assert state.past_end == {}


def test_a_drop_a_hold_or_an_assignment_swaps_in_a_new_state_that_keeps_the_lag() -> None:
    state = positioned({P0: 4, P1: 9, P2: 0})
    before = {tp: state.state(tp) for tp in (P0, P1, P2)}
    state.dropped({P0}, owned={P0, P1, P2})
    state.hold(P1, 9, timestamp_ms=0)
    state.hold_past_end(P2, 0, 0)
    for tp in (P0, P1, P2):
        now = state.state(tp)
        assert now is not None and now is not before[tp]
        assert now.lag is before[tp].lag
    assert state.stored(P0) == 4 and state.stored(P1) == 9
    state.revoking()
    state.revoked({P0, P1, P2})
    state.assigned({P0})
    assert state.stored(P0) is None  # gone with the revocation


def test_each_state_says_why_its_partition_is_or_is_not_consumed() -> None:
    state = positioned({P0: 0, P1: 0, P2: 0})
    state.assigned({P2})
    state.retrying({P1})
    state.hold(P0, 0, timestamp_ms=0)
    reasons = {tp: s.reason for tp in (P0, P1, P2) if (s := state.state(tp))}
    assert reasons == {
        P0: "held by the dead-letter guard",
        P1: "paused while a batch is retried",
        P2: "positioning",
    }
    state.retry_ended({P1})
    assert state.state(P1).reason == "consuming"
    state.hold_past_end(P1, 0, 0)
    assert state.state(P1).reason == "held: its stored offset is past the end of the log"


def test_the_consumer_pauses_exactly_the_owned_partitions_whose_state_waits() -> None:
    consumer = FakeConsumer({P0, P1, P2})
    state = Partitions()
    state.assigned({P0, P1, P2})
    apply_pauses(consumer, state)
    assert consumer.paused() == {P0, P1, P2}
    assert REGISTRY.get_sample_value("user_events_partitions_paused") == 3
    state.positioned({P0: 0, P1: 0, P2: 0}, owned={P0, P1, P2}, generation=state.generation)
    state.retrying({P1})
    apply_pauses(consumer, state)
    assert consumer.paused() == {P1}
    assert REGISTRY.get_sample_value("user_events_partitions_paused") == 1
    state.retry_ended({P1})
    state.dropped({P2, TopicPartition("t", 9)}, owned={P0, P1, P2})
    apply_pauses(consumer, state)
    assert consumer.paused() == {P2}
