"""The rebalance listener: finish the batches in hand before partitions move, and
position the new ones (in the background) after."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from consumer.edges import metrics
from consumer.edges.health import Health
from consumer.pipeline.aftercommit import AfterCommit
from consumer.pipeline.lanes import WriteLanes
from consumer.pipeline.partitions import Partitions, apply_pauses
from consumer.pipeline.positioning import Positioner
from consumer.pipeline.stormguard import BatchGuard

log = logging.getLogger(__name__)


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Talks to the partition state through its transitions only."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        partitions: Partitions,
        lanes: WriteLanes,
        positioner: Positioner,
        guard: BatchGuard,
        health: Health,
    ) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._lanes = lanes
        self._positioner = positioner
        self._guard = guard
        self._health = health

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info(
                "rebalancing: partitions revoked",
                extra={"partitions": sorted(tp.partition for tp in revoked)},
            )
        self._partitions.revoking()
        self._health.joined(False)  # until the group settles again
        # The batches being written finish and commit; none starts after this point.
        await self._lanes.wait_for(None)
        self._partitions.revoked(revoked)
        AfterCommit.forget_series(revoked)
        for tp in revoked:
            self._guard.forget(tp)  # its next owner counts afresh

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # First: aiokafka logs and swallows a listener's exception, and a flag left set
        # would keep every partition unpositioned while the loop looks alive.
        self._partitions.assigned(assigned)
        metrics.REBALANCES.inc()
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )
        # Nothing is fetched for them until positioned (which resumes them).
        apply_pauses(self._consumer, self._partitions)
        for tp in assigned:
            metrics.DLQ_GUARD_TRIPPED.labels(tp.topic, str(tp.partition)).set(0)
            metrics.OFFSET_PAST_END.labels(tp.topic, str(tp.partition)).set(0)
        self._health.joined(True)
        self._positioner.soon()
