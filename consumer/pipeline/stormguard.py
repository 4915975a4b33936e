"""The storm guard applied to batches: which partitions a batch's dead letters would
carry past the limits (checked inside the batch's transaction, before any is sent), and
what the committed batches count towards them. The rule itself is in ``core.guard``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition

from consumer.core.guard import DeadLetterGuard, GuardLimits
from consumer.core.records import KafkaRecord
from consumer.edges.deadletter import DeadLetter
from consumer.pipeline.batches import GuardCheck, outcomes_by_partition
from consumer.settings import Settings


class BatchGuard:
    """The dead-letter storm guard of this member, batch by batch."""

    def __init__(self, settings: Settings) -> None:
        self._guard = DeadLetterGuard(
            GuardLimits(settings.dlq_max_consecutive, settings.dlq_max_ratio, settings.dlq_window)
        )

    @property
    def limits(self) -> GuardLimits:
        return self._guard.limits

    def check_for(self, records: Sequence[KafkaRecord]) -> GuardCheck | None:
        """The check ``write_batch`` runs on the dead letters of ``records``; None when
        the guard is off, so that a batch pays nothing for it."""
        if not self._guard.limits.enabled:
            return None

        def crossings(dead: Sequence[DeadLetter]) -> Mapping[TopicPartition, int]:
            outcomes = outcomes_by_partition(records, dead)
            return {
                key: at
                for key, these in outcomes.items()
                if (at := self._guard.first_crossing(key, these)) is not None
            }

        return crossings

    def count(self, records: Sequence[KafkaRecord], dead: Sequence[DeadLetter]) -> None:
        """``records`` were committed, ``dead`` of them dead-lettered."""
        if self._guard.limits.enabled:
            for key, these in outcomes_by_partition(records, dead).items():
                self._guard.committed(key, these)

    def forget(self, key: TopicPartition) -> None:
        self._guard.forget(key)

    def limits_described(self) -> dict[str, float]:
        limits = self._guard.limits
        return {
            "dlq_max_consecutive": limits.max_consecutive,
            "dlq_max_ratio": limits.max_ratio,
            "dlq_window": limits.window,
        }
