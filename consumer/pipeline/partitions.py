"""This member's partitions and what it knows of each: one state object per partition.

A partition of the assignment is positioning (reading its stored offset from
PostgreSQL), consuming (positioned, with a fence: the next offset not yet taken into a
batch), retrying (a batch of it failed and is tried again), or held (by the storm
guard, or because its stored offset lies past the end of its log). Every change is a
method here, with no I/O; the Kafka consumer's pauses follow the states in one place
(``apply_pauses``). Like aiokafka's ``SubscriptionState``, it keeps the state apart from
the fetcher and the group coordinator, so that every transition is tested without a
broker.

Transitions, per partition::

    assigned ──▶ positioning ──positioned(offset)──▶ consuming ◀──▶ retrying
                     ▲                                   │  take: fence moves past
                     └──────────── dropped ◀─────────────┘  what is taken
    consuming ──hold / hold_past_end──▶ held (until revoked)
    revoked (from any state) ──▶ gone

A batch carries the state objects it was taken from, and the generation of the fetch
that brought it. An assignment, a drop or a hold swaps in a new state object, and a
revocation bumps the generation: a batch that outlived either is not written
(``is_current``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.core.lag import PartitionLag
from consumer.core.records import FetchedRecord
from consumer.edges.kafka import pause, resume


def take_unseen(
    fetched: Mapping[TopicPartition, Sequence[FetchedRecord]],
    fence: MutableMapping[TopicPartition, int],
) -> tuple[list[FetchedRecord], dict[TopicPartition, int]]:
    """The fetched messages at or past each partition's fence, which then moves past them,
    and, per partition taken from, where its fence stood: where the batch starts.

    ``fence`` holds, for each positioned partition this member owns, the next offset it
    has not taken yet; partitions missing from it are skipped. A fetch can complete
    before a seek and be handed over after it: offsets below the fence are then records
    already applied, or already in a batch in hand, and are dropped here.

    The batch holds its partitions in order (topic, partition), as ``rebuild`` reads a
    transaction's rows back: a user's create in one partition and its update in another
    are then decided in the same order by both.
    """
    taken: list[FetchedRecord] = []
    starts: dict[TopicPartition, int] = {}
    for tp, messages in sorted(fetched.items()):
        expected = fence.get(tp)
        if expected is None or not messages:
            continue
        unseen = (
            messages
            if messages[0].offset >= expected
            else [m for m in messages if m.offset >= expected]
        )
        if unseen:
            taken.extend(unseen)
            starts[tp] = expected
            fence[tp] = unseen[-1].offset + 1
    return taken, starts


class Status(Enum):
    """Where a partition stands; the value is why it is or is not consumed (``/status``)."""

    POSITIONING = "positioning"
    CONSUMING = "consuming"
    RETRYING = "paused while a batch is retried"
    HELD = "held by the dead-letter guard"
    PAST_END = "held: its stored offset is past the end of the log"


@dataclass(eq=False)
class PartitionState:
    """One partition of this member. Compared by identity: a batch is current only while
    the states it was taken from are."""

    status: Status
    # Kept across drops and holds; it goes with the partition when revoked.
    lag: PartitionLag
    # While consuming or retrying: the next offset not yet taken into a batch.
    fence: int | None = None
    # While held by the storm guard: the offset of the record it is held at.
    held_at: int | None = None
    # While held past the end of its log: the stored offset and the high watermark.
    past_end: tuple[int, int] | None = None

    @property
    def waits(self) -> bool:
        """Nothing of it is to be fetched: it is paused."""
        return self.status is not Status.CONSUMING

    @property
    def reason(self) -> str:
        return self.status.value

    def positioned(self, offset: int, now: float) -> None:
        self.status = Status.CONSUMING
        self.fence = offset
        self.lag.positioned(offset, now)

    def retrying(self) -> None:
        if self.status is Status.CONSUMING:
            self.status = Status.RETRYING

    def retry_ended(self) -> None:
        if self.status is Status.RETRYING:
            self.status = Status.CONSUMING


@dataclass(frozen=True)
class Taken:
    """What one ``take`` moved past: the messages, and per partition where they start and
    the state it was taken from, which the batch carries."""

    messages: list[FetchedRecord]
    starts: dict[TopicPartition, int]
    states: dict[TopicPartition, PartitionState]
    generation: int


@dataclass
class Partitions:
    """The state of this member's partitions (see the module docstring)."""

    # From a revocation (or the start) to the next assignment: nothing is positioned then.
    rebalancing: bool = True
    # Bumped on every revocation: a batch fetched before it is not written.
    generation: int = 0
    _states: dict[TopicPartition, PartitionState] = field(default_factory=dict)

    def state(self, tp: TopicPartition) -> PartitionState | None:
        return self._states.get(tp)

    def _swap(self, tp: TopicPartition, status: Status, **known: Any) -> PartitionState:
        """A new state for ``tp``, keeping its lag: batches taken from the old one are
        no longer current."""
        old = self._states.get(tp)
        new = PartitionState(status, old.lag if old else PartitionLag(), **known)
        self._states[tp] = new
        return new

    def waiting(self, owned: Iterable[TopicPartition]) -> set[TopicPartition]:
        """The partitions of ``owned`` that are to be paused."""
        return {tp for tp in owned if (state := self._states.get(tp)) and state.waits}

    # --- the group --------------------------------------------------------------------

    def revoking(self) -> None:
        """A rebalance begins: batches fetched until now belong to the past generation."""
        self.rebalancing = True
        self.generation += 1

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """``partitions`` went to the group; what was known of them goes too."""
        for tp in partitions:
            self._states.pop(tp, None)

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """The rebalance ended with ``partitions`` assigned: each waits to be positioned
        from the stored offsets (paused until then)."""
        self.rebalancing = False
        for tp in partitions:
            self._swap(tp, Status.POSITIONING)

    # --- positioning ------------------------------------------------------------------

    @property
    def unpositioned(self) -> frozenset[TopicPartition]:
        return frozenset(self._with(Status.POSITIONING))

    def to_position(self, owned: Iterable[TopicPartition]) -> list[TopicPartition]:
        """The partitions to read stored offsets for, in order; forgets the ones not owned."""
        self._forget_unowned(self.unpositioned, set(owned))
        return sorted(self.unpositioned)

    def positioned(
        self,
        targets: Mapping[TopicPartition, int],
        owned: Iterable[TopicPartition],
        generation: int,
    ) -> dict[TopicPartition, int]:
        """``targets`` were read from the stored offsets, starting in ``generation``;
        returns where to seek the owned ones, which are then positioned there (and to be
        resumed). Nothing, if a rebalance began since: the next assignment positions its
        partitions, from offsets read after the writes in hand committed."""
        if generation != self.generation or self.rebalancing:
            return {}
        owned = set(owned)
        seeks = {tp: offset for tp, offset in targets.items() if tp in owned}
        now = time.time()
        for tp, offset in seeks.items():
            state = self._states.get(tp) or self._swap(tp, Status.POSITIONING)
            state.positioned(offset, now)
        self._forget_unowned(self.unpositioned, owned)
        return seeks

    def _forget_unowned(
        self, partitions: Iterable[TopicPartition], owned: set[TopicPartition]
    ) -> None:
        for tp in partitions:
            if tp not in owned:
                del self._states[tp]

    def dropped(
        self, partitions: Iterable[TopicPartition], owned: Iterable[TopicPartition]
    ) -> set[TopicPartition]:
        """A batch of ``partitions`` was dropped (taken before a rebalance, or refused by
        the stored offsets). Its records may have been fetched after the partitions were
        positioned again: the owned ones are positioned once more, and a batch of them
        already taken is dropped too. Returns those to be positioned again; held ones
        stay held."""
        owned = set(owned)
        again: set[TopicPartition] = set()
        for tp in partitions:
            state = self._states.get(tp)
            if state is None or state.status is Status.HELD:
                continue
            state.lag.dropped()
            if state.status is Status.PAST_END:
                continue
            if tp in owned:
                self._swap(tp, Status.POSITIONING)
                again.add(tp)
            else:
                del self._states[tp]  # its revocation is on the way
        return again

    def hold(self, tp: TopicPartition, offset: int, timestamp_ms: int) -> None:
        """The storm guard holds ``tp`` at ``offset`` (a record with ``timestamp_ms``): it
        is neither taken from, nor positioned, nor resumed until it is revoked (a restart
        counts afresh); a batch of it taken since is dropped."""
        self._swap(tp, Status.HELD, held_at=offset).lag.hold(offset, timestamp_ms)

    @property
    def held(self) -> dict[TopicPartition, int]:
        """The partitions the storm guard holds, each with the offset it is held at."""
        return {tp: s.held_at for tp, s in self._states.items() if s.held_at is not None}

    def beyond_the_end(
        self, highwaters: Mapping[TopicPartition, int | None]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """The positioned partitions, with no batch in hand, whose next offset lies past
        their high watermark (read from fetch responses), each with the two. In a log
        that only grows that cannot be: the log is younger than the stored offsets (a
        topic deleted and created again, a new cluster, a fresh embedded broker)."""
        found = {}
        for tp, state in self._states.items():
            fence, highwater = state.fence, highwaters.get(tp)
            if fence is None or highwater is None or state.lag.in_hand:
                continue
            if fence > highwater:
                found[tp] = (fence, highwater)
        return found

    def hold_past_end(self, tp: TopicPartition, stored: int, highwater: int) -> None:
        """Hold ``tp``, whose stored offset ``stored`` lies past its log's end: neither
        taken from, nor positioned, nor resumed until it is revoked (a restart, with
        OFFSET_PAST_END set to reset it, releases it)."""
        self._swap(tp, Status.PAST_END, past_end=(stored, highwater))

    @property
    def past_end(self) -> dict[TopicPartition, tuple[int, int]]:
        """The partitions held past the end of their log: stored offset, high watermark."""
        return {tp: s.past_end for tp, s in self._states.items() if s.past_end is not None}

    # --- taking and writing -----------------------------------------------------------

    def fence(self, tp: TopicPartition) -> int | None:
        """The next offset of ``tp`` not yet taken; None while it is not positioned."""
        state = self._states.get(tp)
        return state.fence if state else None

    def positioned_among(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        return [tp for tp in partitions if self.fence(tp) is not None]

    def take(
        self, fetched: Mapping[TopicPartition, Sequence[FetchedRecord]], generation: int
    ) -> Taken:
        """Take what is past each fence (``take_unseen``), moving the fences past it, for a
        batch of ``generation``: the one current when the fetch began."""
        fences = {tp: s.fence for tp, s in self._states.items() if s.fence is not None}
        messages, starts = take_unseen(fetched, fences)
        states = {tp: self._states[tp] for tp in starts}
        for tp, start in starts.items():
            states[tp].fence = fences[tp]
            first = next(m for m in fetched[tp] if m.offset >= start)
            states[tp].lag.taken(start, first.timestamp)
        return Taken(messages, starts, states, generation)

    def is_current(self, generation: int, states: Mapping[TopicPartition, PartitionState]) -> bool:
        """No rebalance since the fetch of ``generation``, and each partition still in the
        state the batch was taken from (not dropped, held or assigned again since)."""
        return generation == self.generation and all(
            self._states.get(tp) is state for tp, state in states.items()
        )

    def retrying(self, partitions: Iterable[TopicPartition]) -> None:
        """A batch of ``partitions`` failed and will be tried again: they wait."""
        for tp in partitions:
            if state := self._states.get(tp):
                state.retrying()

    def retry_ended(self, partitions: Iterable[TopicPartition]) -> None:
        """The batch of ``partitions`` is done retrying: those it kept waiting go on."""
        for tp in partitions:
            if state := self._states.get(tp):
                state.retry_ended()

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """A batch stored ``offsets`` in PostgreSQL."""
        now = time.time()
        for tp, offset in offsets.items():
            if state := self._states.get(tp):
                state.lag.committed(offset, now, held=state.status is Status.HELD)

    def lag(self, tp: TopicPartition) -> PartitionLag | None:
        """What ``tp``'s lag is computed from; None if it is not owned."""
        state = self._states.get(tp)
        return state.lag if state else None

    def oldest_unapplied(self, tp: TopicPartition) -> float | None:
        """When the oldest record of ``tp`` not yet applied was produced (Unix time); see
        ``PartitionLag.oldest_unapplied``."""
        state = self._states.get(tp)
        return state.lag.oldest_unapplied() if state else None

    def stored(self, tp: TopicPartition) -> int | None:
        """The offset of ``tp`` stored in PostgreSQL as far as known (None if unknown)."""
        state = self._states.get(tp)
        return state.lag.stored if state else None

    def _with(self, status: Status) -> Iterable[TopicPartition]:
        return [tp for tp, state in self._states.items() if state.status is status]


def apply_pauses(consumer: AIOKafkaConsumer, partitions: Partitions) -> None:
    """Have the consumer fetch from the owned partitions that are consuming, and from no
    other: the one place the loop's parts pause and resume."""
    waiting = partitions.waiting(consumer.assignment())
    paused = consumer.paused()
    pause(consumer, waiting - paused)
    resume(consumer, paused - waiting)
