"""How far a partition's consumer is behind: the rule, and what the loop keeps to apply it.

The lag of a partition, in records, is its high watermark less the next offset to
apply (stored in PostgreSQL); in seconds, the age of its oldest record not yet applied.
The live member (``/status`` and its gauges) and the ``status`` tool both say it by
these two functions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def records_behind(high_watermark: int, next_offset: int) -> int:
    """The records between ``next_offset`` and the end of the log; never negative (a log
    younger than the offsets says 0, and is reported apart)."""
    return max(0, high_watermark - next_offset)


def seconds_behind(now: float, produced_at: float) -> float:
    """How old a record produced at ``produced_at`` (Unix time) is, to the millisecond;
    never negative (a producer's clock ahead of ours)."""
    return max(0.0, round(now - produced_at, 3))


@dataclass(eq=False, slots=True)
class PartitionLag:
    """What one owned partition's lag is computed from: its stored offset, as far as this
    member knows, and the batches taken and not yet committed."""

    # The offset stored in PostgreSQL; None until the partition is positioned.
    stored: int | None = None
    # When the partition was last positioned or committed (Unix time).
    moved_at: float | None = None
    # The start offset and the Kafka timestamp (ms) of the first record of each batch
    # taken and not yet committed, oldest first.
    _in_hand: deque[tuple[int, int]] = field(default_factory=deque)

    def positioned(self, offset: int, now: float) -> None:
        self.stored = offset
        self.moved_at = now

    def taken(self, start: int, timestamp_ms: int) -> None:
        self._in_hand.append((start, timestamp_ms))

    def hold(self, offset: int, timestamp_ms: int) -> None:
        """Held at the record at ``offset``: that record is the oldest not applied."""
        self._in_hand = deque([(offset, timestamp_ms)])

    def dropped(self) -> None:
        self._in_hand.clear()

    def committed(self, offset: int, now: float, *, held: bool) -> None:
        """A batch stored ``offset``: the batches in hand before it are applied (those of
        a held partition stay, its oldest being the record it is held at)."""
        if self.stored is not None:
            self.stored = offset
            self.moved_at = now
        while self._in_hand and self._in_hand[0][0] < offset and not held:
            self._in_hand.popleft()

    @property
    def in_hand(self) -> bool:
        return bool(self._in_hand)

    def oldest_unapplied(self) -> float | None:
        """When the oldest record not yet applied was produced (Unix time): the first
        record of the oldest batch in hand, or the one the partition is held at. Until
        its next records are taken, an estimate: when the partition last moved
        (positioned or committed). None if it was never positioned."""
        if self._in_hand and self._in_hand[0][1] >= 0:
            return self._in_hand[0][1] / 1000
        return self.moved_at

    def behind(self, high_watermark: int | None, now: float) -> tuple[int, float] | None:
        """The lag in records and in seconds; None while either end is unknown."""
        if high_watermark is None or self.stored is None:
            return None
        records = records_behind(high_watermark, self.stored)
        oldest = self.oldest_unapplied()
        seconds = seconds_behind(now, oldest) if records and oldest is not None else 0.0
        return records, seconds
