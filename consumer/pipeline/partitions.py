"""This member's partitions and what it knows of each: one owner, no I/O.

A partition of the assignment is either waiting to be positioned (from the offsets
stored in PostgreSQL) or positioned, with a fence: the next offset not yet taken into a
batch. Every change of that state is a method here, and each says what the Kafka
consumer must do about it (pause, resume, seek), which the loop then does. Like
aiokafka's ``SubscriptionState``, it keeps the state apart from the fetcher and the
group coordinator, so that every transition is tested without a broker.

Transitions, per partition::

    assigned ──▶ unpositioned ──positioned(offset)──▶ positioned (fence = offset)
                     ▲                                   │  take: fence moves past
                     └──────────── dropped ◀─────────────┘  what is taken
    revoked (from any state) ──▶ gone

A batch carries the generation and the epochs of its partitions from when it was taken:
a revocation bumps the generation, a drop bumps the partition's epoch, and a batch that
outlived either is not written (``is_current``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition


def take_unseen(
    fetched: Mapping[TopicPartition, Sequence[Any]], fence: MutableMapping[TopicPartition, int]
) -> tuple[list[Any], dict[TopicPartition, int]]:
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
    taken: list[Any] = []
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


@dataclass(frozen=True)
class Taken:
    """What one ``take`` moved past: the messages, and per partition where they start and
    the partition's epoch, which the batch carries."""

    messages: list[Any]
    starts: dict[TopicPartition, int]
    epochs: dict[TopicPartition, int]
    generation: int


@dataclass
class Partitions:
    """The state of this member's partitions (see the module docstring)."""

    # From a revocation (or the start) to the next assignment: nothing is positioned then.
    rebalancing: bool = True
    # Bumped on every revocation: a batch taken before it is not written.
    generation: int = 0
    # Per positioned partition: the next offset not yet taken into a batch.
    _fence: dict[TopicPartition, int] = field(default_factory=dict)
    _unpositioned: set[TopicPartition] = field(default_factory=set)
    # Per partition: bumped whenever a batch of it is dropped, so that a batch taken
    # before that (waiting for its turn) is dropped too, not written.
    _epochs: dict[TopicPartition, int] = field(default_factory=dict)
    # The partitions of each batch being retried. Batches written at once share no
    # partition, so their partition sets tell them apart.
    _retrying: set[frozenset[TopicPartition]] = field(default_factory=set)
    # Per positioned partition: the offset stored in PostgreSQL, as far as this member
    # knows (for the lag).
    _stored: dict[TopicPartition, int] = field(default_factory=dict)
    # Per partition the storm guard holds: the offset of the record it is held at.
    _held: dict[TopicPartition, int] = field(default_factory=dict)
    # Per partition held because its stored offset lies past the end of its log (the
    # topic is younger than the offsets): that offset and the high watermark.
    _past_end: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    # Per partition, for the lag in seconds: the start offset and the Kafka timestamp (ms)
    # of the first record of each batch taken and not yet committed, oldest first; and
    # when the partition was last positioned or committed (Unix time).
    _in_hand: dict[TopicPartition, deque[tuple[int, int]]] = field(default_factory=dict)
    _progress: dict[TopicPartition, float] = field(default_factory=dict)

    # --- the group --------------------------------------------------------------------

    def revoking(self) -> None:
        """A rebalance begins: batches taken until now belong to the past generation."""
        self.rebalancing = True
        self.generation += 1

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """``partitions`` went to the group; what was known of them goes too."""
        for tp in partitions:
            self._fence.pop(tp, None)
            self._stored.pop(tp, None)
            self._unpositioned.discard(tp)
            self._held.pop(tp, None)
            self._past_end.pop(tp, None)
            self._in_hand.pop(tp, None)
            self._progress.pop(tp, None)

    def assigned(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        """The rebalance ended with ``partitions`` assigned; returns those to pause: all of
        them, until positioned from the stored offsets."""
        self.rebalancing = False
        assigned = set(partitions)
        for tp in assigned:
            self._fence.pop(tp, None)  # until positioned, nothing of it is taken
        self._unpositioned |= assigned
        return assigned

    # --- positioning ------------------------------------------------------------------

    @property
    def unpositioned(self) -> frozenset[TopicPartition]:
        return frozenset(self._unpositioned)

    def to_position(self, owned: Iterable[TopicPartition]) -> list[TopicPartition]:
        """The partitions to read stored offsets for, in order; forgets the ones not owned."""
        self._unpositioned &= set(owned)
        return sorted(self._unpositioned)

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
            self._fence[tp] = offset
            self._stored[tp] = offset
            self._progress[tp] = now
        self._unpositioned.difference_update(targets)
        self._unpositioned &= owned
        return seeks

    def dropped(
        self, partitions: Iterable[TopicPartition], owned: Iterable[TopicPartition]
    ) -> set[TopicPartition]:
        """A batch of ``partitions`` was dropped (taken before a rebalance, or refused by
        the stored offsets). Its records may have been fetched after the partitions were
        positioned again: the owned ones are positioned once more, and a batch of them
        already taken is dropped too. Returns those to pause until then."""
        partitions = set(partitions)
        # Held ones stay held.
        again = (partitions & set(owned)) - self._held.keys() - self._past_end.keys()
        self._unpositioned |= again
        for tp in partitions:
            self._fence.pop(tp, None)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
            if tp not in self._held:
                self._in_hand.pop(tp, None)
        return again

    def hold(self, tp: TopicPartition, offset: int, timestamp_ms: int) -> None:
        """The storm guard holds ``tp`` at ``offset`` (a record with ``timestamp_ms``): it
        is neither taken from, nor positioned, nor resumed until it is revoked (a restart
        counts afresh); a batch of it taken since is dropped."""
        self._held[tp] = offset
        self._fence.pop(tp, None)
        self._unpositioned.discard(tp)
        self._epochs[tp] = self._epochs.get(tp, 0) + 1
        self._in_hand[tp] = deque([(offset, timestamp_ms)])

    @property
    def held(self) -> dict[TopicPartition, int]:
        """The partitions the storm guard holds, each with the offset it is held at."""
        return dict(self._held)

    def beyond_the_end(
        self, highwaters: Mapping[TopicPartition, int | None]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """The positioned partitions, with no batch in hand, whose next offset lies past
        their high watermark (read from fetch responses), each with the two. In a log
        that only grows that cannot be: the log is younger than the stored offsets (a
        topic deleted and created again, a new cluster, a fresh embedded broker)."""
        found = {}
        for tp, fence in self._fence.items():
            highwater = highwaters.get(tp)
            if highwater is not None and fence > highwater and not self._in_hand.get(tp):
                found[tp] = (fence, highwater)
        return found

    def hold_past_end(self, tp: TopicPartition, stored: int, highwater: int) -> None:
        """Hold ``tp``, whose stored offset ``stored`` lies past its log's end: neither
        taken from, nor positioned, nor resumed until it is revoked (a restart, with
        OFFSET_PAST_END set to reset it, releases it)."""
        self._past_end[tp] = (stored, highwater)
        self._fence.pop(tp, None)
        self._unpositioned.discard(tp)
        self._epochs[tp] = self._epochs.get(tp, 0) + 1

    @property
    def past_end(self) -> dict[TopicPartition, tuple[int, int]]:
        """The partitions held past the end of their log: stored offset, high watermark."""
        return dict(self._past_end)

    # --- taking and writing -----------------------------------------------------------

    def fence(self, tp: TopicPartition) -> int | None:
        """The next offset of ``tp`` not yet taken; None while it is not positioned."""
        return self._fence.get(tp)

    def positioned_among(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        return [tp for tp in partitions if tp in self._fence]

    def take(self, fetched: Mapping[TopicPartition, Sequence[Any]], generation: int) -> Taken:
        """Take what is past each fence (``take_unseen``), moving the fences past it, for a
        batch of ``generation``: the one current when the fetch began."""
        messages, starts = take_unseen(fetched, self._fence)
        epochs = {tp: self._epochs.get(tp, 0) for tp in starts}
        for tp, start in starts.items():
            first = next(m for m in fetched[tp] if m.offset >= start)
            self._in_hand.setdefault(tp, deque()).append((start, first.timestamp))
        return Taken(messages, starts, epochs, generation)

    def is_current(self, generation: int, epochs: Mapping[TopicPartition, int]) -> bool:
        """No rebalance, and no batch of these partitions dropped, since the batch with
        ``generation`` and ``epochs`` was taken."""
        return generation == self.generation and all(
            self._epochs.get(tp, 0) == epoch for tp, epoch in epochs.items()
        )

    def retrying(self, partitions: frozenset[TopicPartition]) -> None:
        """A batch of ``partitions`` failed and will be tried again: they are paused."""
        self._retrying.add(partitions)

    def retry_ended(
        self, partitions: frozenset[TopicPartition], paused: Iterable[TopicPartition]
    ) -> set[TopicPartition]:
        """The batch of ``partitions`` is done retrying; returns which of ``paused`` to
        resume: all but those another batch still retries or that wait to be positioned."""
        self._retrying.discard(partitions)
        return set(paused) - self._unpositioned.union(*self._retrying, self._held, self._past_end)

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """A batch stored ``offsets`` in PostgreSQL."""
        now = time.time()
        for tp, offset in offsets.items():
            if tp in self._stored:
                self._stored[tp] = offset
                self._progress[tp] = now
            in_hand = self._in_hand.get(tp)
            while in_hand and in_hand[0][0] < offset and tp not in self._held:
                in_hand.popleft()

    def oldest_unapplied(self, tp: TopicPartition) -> float | None:
        """When the oldest record of ``tp`` not yet applied was produced (Unix time): the
        first record of the oldest batch in hand, or the one the partition is held at.
        Until its next records are taken, an estimate: when the partition last moved
        (positioned or committed). None if it is not positioned."""
        in_hand = self._in_hand.get(tp)
        if in_hand and in_hand[0][1] >= 0:
            return in_hand[0][1] / 1000
        return self._progress.get(tp)

    def stored(self, tp: TopicPartition) -> int | None:
        """The offset of ``tp`` stored in PostgreSQL as far as known (None if unknown)."""
        return self._stored.get(tp)
