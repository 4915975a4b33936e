"""Which dead letters a command takes: by reason, source, failure time, position. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from user_events_schemas import DLQ_REASON

from consumer.core.identity import event_source
from consumer.core.records import KafkaRecord, Reason
from consumer.tools.dlq.letters import failed_at, header, rfc3339
from consumer.tools.errors import BadArgument

REASONS = tuple(str(reason) for reason in Reason)


def parse_reasons(values: Iterable[str]) -> frozenset[str]:
    """``--reason`` values, each one of the contract's reasons (``BadArgument`` else: a
    typo would otherwise match nothing, and look like there is nothing to do)."""
    reasons = frozenset(value.strip() for value in values)
    for reason in sorted(reasons):
        if reason not in REASONS:
            raise BadArgument(f"--reason {reason!r} is not a reason: one of {', '.join(REASONS)}")
    return reasons


@dataclass(frozen=True, slots=True)
class Criteria:
    """Which dead letters to take: every given filter must match."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before
    offsets: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) on the DLQ topic
    source: str | None = None  # the CloudEvent's source

    def matches(self, letter: KafkaRecord) -> bool:
        if self.offsets and (letter.partition, letter.offset) not in self.offsets:
            return False
        if self.reasons and header(letter.headers, DLQ_REASON) not in self.reasons:
            return False
        if self.since is not None or self.until is not None:
            at = failed_at(letter)
            if self.since is not None and at < self.since:
                return False
            if self.until is not None and at >= self.until:
                return False
        return self.source is None or event_source(letter) == self.source

    def to_json(self) -> dict[str, object]:
        """The filters given, for a report."""
        given: dict[str, object] = {
            "reason": sorted(self.reasons),
            "since": rfc3339(self.since) if self.since else None,
            "until": rfc3339(self.until) if self.until else None,
            "source": self.source,
        }
        return {name: value for name, value in given.items() if value}
