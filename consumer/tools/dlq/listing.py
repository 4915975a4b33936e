"""``dlq list``: the dead-letter topic read up to now and summarised, personal data masked."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumer.core.records import KafkaRecord
from consumer.edges.deadletter import ORIGINAL_TOPIC
from consumer.settings import Settings
from consumer.tools.dlq.letters import failed_at, header, reason_of
from consumer.tools.dlq.masking import mask_bytes, masked_headers
from consumer.tools.kafkareader import (
    OffsetRange,
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)

Moment = tuple[datetime, int, int]  # failed at, partition, offset


@dataclass(slots=True)
class DlqSummary:
    """Counts by reason and original topic, oldest and newest, and the last few letters."""

    topic: str
    keep_last: int = 5
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_original_topic: Counter[str] = field(default_factory=Counter)
    oldest: Moment | None = None
    newest: Moment | None = None
    _last: list[tuple[int, int, int, KafkaRecord]] = field(default_factory=list)

    def add(self, letter: KafkaRecord) -> None:
        self.total += 1
        self.by_reason[reason_of(letter)] += 1
        self.by_original_topic[header(letter.headers, ORIGINAL_TOPIC) or "(none)"] += 1
        at = (failed_at(letter), letter.partition, letter.offset)
        self.oldest = at if self.oldest is None or at < self.oldest else self.oldest
        self.newest = at if self.newest is None or at > self.newest else self.newest
        entry = (letter.timestamp_ms, letter.partition, letter.offset, letter)
        if len(self._last) < self.keep_last:
            heapq.heappush(self._last, entry)
        elif self.keep_last and entry[:3] > self._last[0][:3]:
            heapq.heapreplace(self._last, entry)

    @property
    def last(self) -> list[KafkaRecord]:
        return [e[3] for e in sorted(self._last, key=lambda e: e[:3])]

    @property
    def complete(self) -> bool:
        """Always: listing refuses nothing."""
        return True

    def to_json(self) -> dict[str, Any]:
        def moment(at: Moment | None) -> dict[str, Any] | None:
            if at is None:
                return None
            return {"failed_at": at[0].isoformat(), "partition": at[1], "offset": at[2]}

        return {
            "topic": self.topic,
            "total": self.total,
            "by_reason": dict(self.by_reason.most_common()),
            "by_original_topic": dict(self.by_original_topic.most_common()),
            "oldest": moment(self.oldest),
            "newest": moment(self.newest),
            "last": [
                {
                    "partition": r.partition,
                    "offset": r.offset,
                    "timestamp": datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).isoformat(),
                    "key": mask_bytes(r.key),
                    "value": mask_bytes(r.value),
                    "headers": masked_headers(r.headers),
                }
                for r in self.last
            ],
        }

    def render(self) -> str:
        data = self.to_json()
        lines = [f"dead-letter topic {self.topic}: {self.total} records"]
        if not self.total:
            return lines[0]
        lines.append("by reason:  " + ", ".join(f"{k} {v}" for k, v in data["by_reason"].items()))
        lines.append(
            "by topic:   " + ", ".join(f"{k} {v}" for k, v in data["by_original_topic"].items())
        )
        for label in ("oldest", "newest"):
            at = data[label]
            lines.append(
                f"{label}:     {at['failed_at']} (partition {at['partition']}, "
                f"offset {at['offset']})"
            )
        lines.append(f"last {len(data['last'])}:")
        for r in data["last"]:
            lines.append(f"  {r['partition']}:{r['offset']} at {r['timestamp']} key={r['key']}")
            lines.append(f"    value={r['value']}")
            for name, value in r["headers"]:
                lines.append(f"    {name}: {value}")
        return "\n".join(lines)


async def list_dead_letters(settings: Settings, last: int = 5) -> DlqSummary:
    """Read the whole dead-letter topic up to now and summarise it."""
    summary = DlqSummary(settings.kafka_dlq_topic, keep_last=last)
    async with assigned_consumer(settings) as consumer:
        tps = await partitions_of(consumer, settings.kafka_dlq_topic)
        highs = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        ranges = {tp: OffsetRange(begins[tp], highs[tp]) for tp in tps}
        async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
            for letter in batch:
                summary.add(letter)
    return summary
