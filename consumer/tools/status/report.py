"""What ``status`` found per partition, the group as the broker describes it, and how both
are shown. Pure: the reading is in ``gather``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from consumer.core.lag import records_behind, seconds_behind
from consumer.core.parking import PARKED_REASONS
from consumer.edges.store_lookup import ParkedSummary
from consumer.tools.display import render_table, utc_text

ReadFrom = Literal["postgresql", "kafka", "beginning"]


def read_from(stored: int | None, committed: int | None, beginning: int) -> tuple[int, ReadFrom]:
    """Where the group goes on reading a partition: the offset PostgreSQL stores, else the
    one Kafka has committed (where a first owner starts), else the partition's beginning."""
    if stored is not None:
        return stored, "postgresql"
    if committed is not None:
        return committed, "kafka"
    return beginning, "beginning"


def lag_seconds(now: datetime, oldest_timestamp_ms: int | None) -> float | None:
    """How old the oldest record not yet applied is: 0 when there is none, None when it
    carries no timestamp (-1), never negative (a producer's clock ahead of ours)."""
    if oldest_timestamp_ms is None:
        return 0.0
    if oldest_timestamp_ms < 0:
        return None
    return seconds_behind(now.timestamp(), oldest_timestamp_ms / 1000)


@dataclass(frozen=True, slots=True)
class Owner:
    """A member of the group, as the broker names it."""

    member_id: str
    client_id: str
    host: str

    def __str__(self) -> str:
        return f"{self.member_id} ({self.host})" if self.host else self.member_id


@dataclass(frozen=True, slots=True)
class GroupView:
    """The group as the broker describes it. ``unknown_owners`` says why the owners of the
    partitions are not known (None when they are)."""

    state: str | None
    members: tuple[Owner, ...] | None
    owners: Mapping[int, Owner] = field(default_factory=dict)
    unknown_owners: str | None = None

    @classmethod
    def unknown(cls, why: str) -> GroupView:
        return cls(None, None, {}, why)

    def owner_text(self, partition: int) -> str:
        if self.unknown_owners is None:
            owner = self.owners.get(partition)
            return str(owner) if owner is not None else "none"
        return "none" if self.state == "Empty" else "unknown"


def group_view(described: Sequence[Sequence[Any]], group_id: str, topic: str) -> GroupView:
    """The owners of ``topic``'s partitions, from DescribeGroups' ``groups`` for
    ``group_id``: known only when the group is stable and the broker reports each
    member's assignment (some Kafka-compatible brokers leave it empty)."""
    for error_code, name, state, protocol_type, _protocol, members, *_ in described:
        if name != group_id:
            continue
        if error_code:
            return GroupView.unknown(f"the broker answered error code {error_code}")
        named = tuple(Owner(*member[:3]) for member in members)
        if state != "Stable":
            return GroupView(state, named, {}, f"the group is {state or 'unknown'}")
        if protocol_type != "consumer":
            return GroupView(state, named, {}, "the group is not a consumer group")
        owners: dict[int, Owner] = {}
        for member, (*_, assignment) in zip(named, members, strict=True):
            if not assignment:
                why = "the broker does not report the members' assignments"
                return GroupView(state, named, {}, why)
            try:
                decoded = ConsumerProtocolMemberAssignment.decode(assignment)
            except ValueError:
                return GroupView(state, named, {}, "an assignment could not be read")
            for assigned_topic, partitions in decoded.assignment:
                if assigned_topic == topic:
                    owners.update(dict.fromkeys(partitions, member))
        return GroupView(state, named, owners)
    return GroupView.unknown("the broker did not describe the group")


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition: the offsets, the lag in records and in seconds, the last commit."""

    partition: int
    stored_offset: int | None
    kafka_committed: int | None
    high_watermark: int
    read_from: ReadFrom
    position: int
    lag_seconds: float | None
    oldest_unapplied: tuple[int, datetime] | None  # offset and timestamp, when one is
    last_commit: datetime | None

    @property
    def lag_records(self) -> int:
        return records_behind(self.high_watermark, self.position)

    @property
    def past_end(self) -> bool:
        """The stored offset lies past the end of the log: the topic is younger than the
        offsets (``OFFSET_PAST_END`` says what the service does about it)."""
        return self.position > self.high_watermark


@dataclass(slots=True)
class StatusReport:
    """Every partition of the topic for the group, and whether any lags over the limit."""

    topic: str
    group_id: str
    checked_at: datetime
    group: GroupView
    partitions: list[PartitionStatus]
    max_lag_seconds: float | None = None
    # What waits in parked_events (docs/parking.md): shown, never a reason to exit 1.
    parked: ParkedSummary | None = None

    @property
    def lagging(self) -> list[int]:
        """Partitions whose lag is over ``max_lag_seconds``."""
        limit = self.max_lag_seconds
        return [
            p.partition
            for p in self.partitions
            if limit is not None and p.lag_seconds is not None and p.lag_seconds > limit
        ]

    @property
    def past_end(self) -> list[int]:
        """Partitions whose stored offset lies past the end of their log."""
        return [p.partition for p in self.partitions if p.past_end]

    @property
    def complete(self) -> bool:
        """False when a partition lags over ``max_lag_seconds``, or lies past the end of
        its log (its lag reads 0, yet nothing of it is read): the exit code is then 1."""
        return not self.lagging and not self.past_end

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group_id,
            "checked_at": utc_text(self.checked_at),
            "group_state": self.group.state,
            "group_members": None
            if self.group.members is None
            else [_owner_json(m) for m in self.group.members],
            "owners_unknown": self.group.unknown_owners,
            "max_lag_seconds": self.max_lag_seconds,
            "lagging": self.lagging,
            "past_end": self.past_end,
            "partitions": [self._partition_json(p) for p in self.partitions],
            "parked": None if self.parked is None else parked_json(self.parked),
        }

    def _partition_json(self, p: PartitionStatus) -> dict[str, Any]:
        owner = self.group.owners.get(p.partition)
        return {
            "partition": p.partition,
            "stored_offset": p.stored_offset,
            "kafka_committed": p.kafka_committed,
            "high_watermark": p.high_watermark,
            "read_from": p.read_from,
            "lag_records": p.lag_records,
            "lag_seconds": p.lag_seconds,
            "oldest_unapplied_offset": p.oldest_unapplied[0] if p.oldest_unapplied else None,
            "oldest_unapplied_at": utc_text(p.oldest_unapplied[1]) if p.oldest_unapplied else None,
            "owner": None if owner is None else _owner_json(owner),
            "last_commit": utc_text(p.last_commit) if p.last_commit else None,
        }

    def render(self) -> str:
        state = self.group.state or "state unknown"
        members = "" if self.group.members is None else f", {_plural(len(self.group.members))}"
        lines = [
            f"topic {self.topic}, group {self.group_id} ({state}{members}), "
            f"at {utc_text(self.checked_at)}",
            render_table(
                ["partition", "stored", "kafka", "high", "lag", "lag s", "last commit", "owner"],
                [
                    [
                        str(p.partition),
                        _or_dash(p.stored_offset),
                        _or_dash(p.kafka_committed),
                        str(p.high_watermark),
                        str(p.lag_records),
                        _seconds(p.lag_seconds),
                        utc_text(p.last_commit) if p.last_commit else "-",
                        self.group.owner_text(p.partition),
                    ]
                    for p in self.partitions
                ],
            ),
        ]
        if self.group.unknown_owners:
            lines.append(f"owners unknown: {self.group.unknown_owners}")
            if self.group.members:
                lines.append("members: " + ", ".join(str(m) for m in self.group.members))
        if not_stored := [p.partition for p in self.partitions if p.read_from != "postgresql"]:
            lines.append(
                "nothing stored in PostgreSQL for partitions "
                f"{_list(not_stored)}: lag counted from Kafka's committed offset, else the "
                "beginning"
            )
        if self.past_end:
            lines.append(
                f"stored offset past the end of the log on partitions {_list(self.past_end)}: "
                "the topic is younger than the offsets (see OFFSET_PAST_END in "
                "docs/operations.md)"
            )
        if self.parked is not None:
            lines.append(parked_text(self.parked))
        if self.max_lag_seconds is not None:
            limit = f"{self.max_lag_seconds:g} s"
            lines.append(
                f"lag over {limit} on partitions {_list(self.lagging)}"
                if self.lagging
                else f"every partition within {limit}"
            )
        return "\n".join(lines)


def parked_json(parked: ParkedSummary) -> dict[str, Any]:
    """Counts, per reason (every reason, 0 when none), and the oldest's time and age."""
    return {
        "events": parked.events,
        "by_reason": {reason: parked.by_reason.get(reason, 0) for reason in _reasons(parked)},
        "oldest_parked_at": utc_text(parked.oldest, "milliseconds") if parked.oldest else None,
        "oldest_age_seconds": parked.oldest_age_seconds,
    }


def parked_text(parked: ParkedSummary) -> str:
    """One line: how many events wait, why, and for how long the oldest has."""
    if not parked.events:
        return "parked events: none"
    reasons = ", ".join(
        f"{parked.by_reason[reason]} {reason}"
        for reason in _reasons(parked)
        if parked.by_reason.get(reason)
    )
    since = f" at {utc_text(parked.oldest)}" if parked.oldest else ""
    return (
        f"parked events: {parked.events} ({reasons}), the oldest parked"
        f"{since}, {age_text(parked.oldest_age_seconds)} ago"
    )


def _reasons(parked: ParkedSummary) -> list[str]:
    return [*PARKED_REASONS, *sorted(set(parked.by_reason) - set(PARKED_REASONS))]


def age_text(seconds: float) -> str:
    """A duration as a person reads it: ``4.2 s``, ``12 min 5 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86_400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600} h"


def _owner_json(owner: Owner) -> dict[str, str]:
    return {"member_id": owner.member_id, "client_id": owner.client_id, "host": owner.host}


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return "0" if value == 0 else f"{value:.1f}"


def _plural(members: int) -> str:
    return f"{members} member" if members == 1 else f"{members} members"


def _list(partitions: Sequence[int]) -> str:
    return ", ".join(str(p) for p in partitions)
