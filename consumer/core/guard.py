"""The dead-letter storm guard: when does a partition's run of dead letters mean that its
publisher is broken, rather than that a few records are bad? Pure.

A broken publisher turns every record into a dead letter, and the dead-letter topic then
fills with the whole stream, which someone has to re-drive. Like arroyo's ``DlqLimit``,
the guard allows at most ``max_consecutive`` dead letters in a row on a partition, and
at most ``max_ratio`` of the last ``window`` records (once that many were seen). The
record that would cross a limit is not dead-lettered: the partition is held before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GuardLimits:
    """The limits; 0 turns each off."""

    max_consecutive: int = 0
    max_ratio: float = 0.0
    window: int = 1000

    @property
    def enabled(self) -> bool:
        return self.max_consecutive > 0 or self.max_ratio > 0


@dataclass
class PartitionRun:
    """What the guard remembers of one partition's recent records."""

    consecutive: int = 0
    recent: deque[bool] = field(default_factory=deque)  # True: dead-lettered
    dead_in_recent: int = 0

    def copy(self) -> PartitionRun:
        return PartitionRun(self.consecutive, deque(self.recent), self.dead_in_recent)

    def add(self, dead: bool, window: int) -> None:
        self.consecutive = self.consecutive + 1 if dead else 0
        self.recent.append(dead)
        self.dead_in_recent += dead
        if len(self.recent) > window:
            self.dead_in_recent -= self.recent.popleft()


def crosses(limits: GuardLimits, run: PartitionRun) -> bool:
    """Whether ``run``, just after a dead letter was added to it, is past a limit."""
    if limits.max_consecutive and run.consecutive > limits.max_consecutive:
        return True
    return bool(
        limits.max_ratio
        and len(run.recent) >= limits.window
        and run.dead_in_recent > limits.max_ratio * limits.window
    )


def first_crossing(
    limits: GuardLimits, run: PartitionRun, outcomes: Iterable[tuple[int, bool]]
) -> int | None:
    """The offset of the first record of ``outcomes`` (offset, dead-lettered), in offset
    order, that would cross a limit after ``run``; None if none would. Changes nothing."""
    if not limits.enabled:
        return None
    trial = run.copy()
    for offset, dead in outcomes:
        trial.add(dead, limits.window)
        if dead and crosses(limits, trial):
            return offset
    return None


@dataclass
class DeadLetterGuard:
    """The guard over every partition this member owns."""

    limits: GuardLimits
    _runs: dict[tuple[str, int], PartitionRun] = field(default_factory=dict)

    def first_crossing(
        self, partition: tuple[str, int], outcomes: Iterable[tuple[int, bool]]
    ) -> int | None:
        return first_crossing(self.limits, self._runs.get(partition, PartitionRun()), outcomes)

    def committed(self, partition: tuple[str, int], outcomes: Iterable[tuple[int, bool]]) -> None:
        """``outcomes`` of ``partition`` were committed: remember them."""
        if not self.limits.enabled:
            return
        run = self._runs.setdefault(partition, PartitionRun())
        for _, dead in outcomes:
            run.add(dead, self.limits.window)

    def forget(self, partition: tuple[str, int]) -> None:
        """The partition went to another member, which counts afresh."""
        self._runs.pop(partition, None)
