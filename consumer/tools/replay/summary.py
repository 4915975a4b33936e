"""What a replay did, per partition: read, applied, duplicate, stale, parked, dead-lettered;
and the parked events it healed. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from consumer.core.batchplan import BatchPlan
from consumer.core.records import KafkaRecord, Outcome
from consumer.edges.deadletter import DeadLetter

COUNTS = ("read", "applied", "duplicate", "stale", "parked", "dead_lettered")


@dataclass(slots=True)
class PartitionSummary:
    """What a replay did on one partition."""

    start: int = 0
    end: int = 0
    read: int = 0
    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    parked: int = 0
    dead_lettered: int = 0

    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTS)


@dataclass(slots=True)
class ReplaySummary:
    topic: str
    dry_run: bool
    partitions: dict[int, PartitionSummary] = field(default_factory=dict)
    # Parked events (of any partition, parked earlier) that the replayed events healed.
    healed: int = 0

    @property
    def complete(self) -> bool:
        """Always: a dead-lettered record is an outcome a replay counts, not a failure."""
        return True

    def total(self) -> PartitionSummary:
        total = PartitionSummary()
        for part in self.partitions.values():
            for name in COUNTS:
                setattr(total, name, getattr(total, name) + getattr(part, name))
        return total

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "dry_run": self.dry_run,
            "partitions": {str(p): asdict(s) for p, s in sorted(self.partitions.items())},
            "total": {k: v for k, v in asdict(self.total()).items() if k not in ("start", "end")},
            "healed": self.healed,
        }

    def render(self) -> str:
        head = f"{'partition':>9} {'from':>10} {'to':>10} " + " ".join(f"{n:>13}" for n in COUNTS)
        lines = [f"replay of {self.topic}{' (dry run: nothing written)' if self.dry_run else ''}"]
        lines.append(head)
        for partition, s in sorted(self.partitions.items()):
            lines.append(
                f"{partition:>9} {s.start:>10} {s.end:>10} "
                + " ".join(f"{n:>13}" for n in s.counts())
            )
        counts = self.total().counts()
        lines.append(f"{'total':>9} {'':>10} {'':>10} " + " ".join(f"{n:>13}" for n in counts))
        if self.healed:
            lines.append(f"healed {self.healed} parked events (docs/parking.md)")
        return "\n".join(lines)


def tally(
    summary: ReplaySummary,
    records: Sequence[KafkaRecord],
    plan: BatchPlan,
    dead: Sequence[DeadLetter],
) -> None:
    """Add one batch's verdicts to the per-partition counts."""
    for record in records:
        summary.partitions[record.partition].read += 1
    for verdict in plan.verdicts:
        part = summary.partitions[verdict.record.partition]
        if verdict.result is Outcome.APPLIED:
            part.applied += 1
        elif verdict.result is Outcome.DUPLICATE:
            part.duplicate += 1
        elif verdict.result is Outcome.STALE:
            part.stale += 1
        elif verdict.result is Outcome.PARKED:
            part.parked += 1
    summary.healed += len(plan.healed)
    for record, _ in dead:
        summary.partitions[record.partition].dead_lettered += 1
