"""What ``dlq redrive`` does with each dead letter, where it reads, and where its kept
position moves. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from user_events_schemas import (
    DLQ_DROPPED,
    DLQ_ORIGINAL_TOPIC,
    DLQ_PREFIX,
    DLQ_REDRIVE_COUNT,
    DLQ_VALUE,
)

from consumer.core.records import Headers, KafkaRecord
from consumer.edges.deadletter import OutgoingHeaders
from consumer.edges.store_redrive import HandledRow
from consumer.tools.dlq.letters import header, redrive_count
from consumer.tools.kafkareader import OffsetRange

DEFAULT_MAX_REDRIVES = 3
Where = tuple[int, int]  # (partition, offset) on the dead-letter topic


@dataclass(frozen=True, slots=True)
class Redrive:
    """What to publish for one dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: OutgoingHeaders
    count: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a dead letter is not republished. ``at_limit``: it was redriven ``count`` times,
    the limit of this run; a run with a higher limit redrives it. Any other refusal is for
    good: the dead letter itself lacks what a redrive needs."""

    detail: str
    count: int
    at_limit: bool = False


def redrive_headers(headers: Headers, count: int) -> OutgoingHeaders:
    """The original headers without the ``dlq.*`` provenance, and the new redrive count."""
    kept = [(k, v) for k, v in headers if not k.startswith(DLQ_PREFIX)]
    return [*kept, (DLQ_REDRIVE_COUNT, str(count).encode())]


def decide_redrive(letter: KafkaRecord, max_redrives: int) -> Redrive | Refusal:
    """Re-publish to the original topic, unless it was redriven ``max_redrives`` times."""
    previous = redrive_count(letter.headers)
    target = header(letter.headers, DLQ_ORIGINAL_TOPIC)
    if not target:
        return Refusal("no dlq.original.topic header", previous)
    if previous >= max_redrives:
        return Refusal(
            f"redriven {previous} times already (limit {max_redrives})", previous, at_limit=True
        )
    if header(letter.headers, DLQ_DROPPED):
        # Part of the record was dropped to get the dead letter written.
        return Refusal(
            f"the dead letter does not hold the whole record (see {DLQ_DROPPED})", previous
        )
    if header(letter.headers, DLQ_VALUE):
        # Its value is not the record's own (an empty stand-in for null).
        return Refusal("the dead letter does not hold the record's value (see dlq.value)", previous)
    count = previous + 1
    return Redrive(target, letter.key, letter.value, redrive_headers(letter.headers, count), count)


@dataclass(frozen=True, slots=True)
class Handled:
    """What earlier runs did, as it stands for a run with ``max_redrives``: the dead
    letters to skip, those refused at a lower limit that this run redrives, and how many
    refused at the limit still wait for a higher one."""

    skip: frozenset[Where]
    retry: frozenset[Where]
    waiting: int

    @classmethod
    def of(cls, rows: Iterable[HandledRow], max_redrives: int) -> Handled:
        skip, retry, waiting = set(), set(), 0
        for row in rows:
            where = (row.partition, row.offset)
            if row.outcome == "refused" and row.refused_at_limit:
                if row.redrive_count < max_redrives:
                    retry.add(where)
                    continue
                waiting += 1
            skip.add(where)
        return cls(frozenset(skip), frozenset(retry), waiting)

    def retried_from(self) -> dict[int, int]:
        """Per partition, the first dead letter this run redrives again."""
        starts: dict[int, int] = {}
        for partition, offset in self.retry:
            starts[partition] = min(offset, starts.get(partition, offset))
        return starts


def advance(position: int, handled: Iterable[tuple[int, bool]]) -> tuple[int, bool]:
    """The new position after records (offset, handled) read in order from ``position``,
    and whether it could go on (False once an unhandled record is met). Records before
    the position (refused earlier, read again for a higher limit) do not hold it."""
    for offset, done in handled:
        if offset < position:
            continue
        if not done:
            return position, False
        position = max(position, offset + 1)
    return position, True


def redrive_ranges(
    highwaters: Mapping[int, int],
    positions: Mapping[int, int],
    beginnings: Mapping[int, int],
    offsets: Iterable[Where] = (),
    retried_from: Mapping[int, int] | None = None,
) -> dict[int, OffsetRange]:
    """Where to read: from the kept position (else the beginning), or from the first dead
    letter to redrive again, up to now; with explicit offsets, only their partitions,
    from the smallest to the largest."""
    wanted: dict[int, list[int]] = {}
    for partition, offset in offsets:
        wanted.setdefault(partition, []).append(offset)
    again = retried_from or {}
    ranges: dict[int, OffsetRange] = {}
    for partition, high in highwaters.items():
        position = min(positions.get(partition, 0), again.get(partition, high))
        start = max(position, beginnings.get(partition, 0))
        end = high
        if wanted:
            if partition not in wanted:
                continue
            start, end = min(wanted[partition]), min(high, max(wanted[partition]) + 1)
        ranges[partition] = OffsetRange(min(start, end), end)
    return ranges


@dataclass(slots=True)
class KeptPositions:
    """Per partition, the position a redrive keeps, and whether it still moves: only over
    a contiguous run of handled dead letters from where it stood."""

    current: dict[int, int]
    moving: dict[int, bool]

    @classmethod
    def start(
        cls,
        planned: Mapping[int, OffsetRange],
        positions: Mapping[int, int],
        beginnings: Mapping[int, int],
    ) -> KeptPositions:
        return cls(
            {p: max(positions.get(p, 0), r.start) for p, r in planned.items()},
            {
                p: r.start <= max(positions.get(p, 0), beginnings.get(p, 0))
                for p, r in planned.items()
            },
        )

    def advance(self, seen: Mapping[int, Iterable[tuple[int, bool]]]) -> dict[int, int]:
        """Move over the (offset, handled) read per partition; the positions to keep."""
        for partition, handled in seen.items():
            if self.moving[partition]:
                self.current[partition], self.moving[partition] = advance(
                    self.current[partition], handled
                )
        return {p: self.current[p] for p in seen if self.moving[p]}

    def ends(self, planned: Mapping[int, OffsetRange]) -> dict[int, int]:
        """The ends of the ranges read, where the position still moves: gaps at the end of
        a range (compaction, transaction markers) are handled too."""
        return {p: r.end for p, r in planned.items() if self.moving[p]}


@dataclass(slots=True)
class RedriveReport:
    topic: str
    dry_run: bool
    max_redrives: int
    redriven: Counter[str] = field(default_factory=Counter)  # by reason
    redriven_to: Counter[str] = field(default_factory=Counter)  # by target topic
    refused: list[dict[str, Any]] = field(default_factory=list)
    already_handled: int = 0
    filtered_out: int = 0
    waiting_at_limit: int = 0  # refused at the limit by earlier runs, not redriven by this one

    @property
    def complete(self) -> bool:
        """False when a dead letter was refused (or, on a dry run, would be)."""
        return not self.refused

    def count(self, letter: KafkaRecord, reason: str, decision: Redrive | Refusal) -> None:
        if isinstance(decision, Refusal):
            self.refused.append(
                {"partition": letter.partition, "offset": letter.offset, "detail": decision.detail}
            )
        else:
            self.redriven[reason] += 1
            self.redriven_to[decision.topic] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "dry_run": self.dry_run,
            "max_redrives": self.max_redrives,
            "redriven": sum(self.redriven.values()),
            "redriven_by_reason": dict(self.redriven),
            "redriven_to": dict(self.redriven_to),
            "refused": self.refused,
            "already_handled": self.already_handled,
            "filtered_out": self.filtered_out,
            "waiting_at_limit": self.waiting_at_limit,
        }

    def render(self) -> str:
        d = self.to_json()
        verb = "would redrive" if self.dry_run else "redrove"
        lines = [
            f"{verb} {d['redriven']} dead letters from {self.topic}"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in self.redriven.items())})"
                if d["redriven"]
                else ""
            ),
            f"already handled by an earlier redrive: {self.already_handled}; "
            f"left out by the filters: {self.filtered_out}; refused: {len(self.refused)}",
        ]
        lines += [f"  refused {r['partition']}:{r['offset']}: {r['detail']}" for r in self.refused]
        if self.waiting_at_limit:
            lines.append(
                f"refused by earlier runs at the redrive limit: {self.waiting_at_limit} "
                f"(a run with a higher --max-redrives redrives them)"
            )
        return "\n".join(lines)
