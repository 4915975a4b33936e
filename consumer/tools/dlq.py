"""``user-events-consumer dlq list|redrive``: inspect the dead-letter topic and redrive it.

Both read the dead-letter topic by partition assignment (no consumer group) up to its
high watermark when they start, so they end. Decisions are pure functions (masking,
filters, the redrive-count limit, the position to keep); Kafka and PostgreSQL are
touched only at the edges.

Redrive keeps its state in PostgreSQL (migration 0002): ``dlq_redrives`` records every
dead letter it handled (redriven or refused) and ``dlq_redrive_positions`` the offset
before which every dead letter is handled. A rerun starts at that position and skips
what it already handled, so the same dead letter is never redriven twice by accident.
A dead letter is re-published before its row is written: a crash between the two can
re-publish it once more, which the consumer absorbs as a duplicate (same source and id).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumer.core.records import Headers, KafkaRecord
from consumer.edges.deadletter import DROPPED, OutgoingHeaders
from consumer.edges.kafka import start_producer
from consumer.edges.store import Store
from consumer.edges.store_redrive import HandledLetter, RedriveLog
from consumer.settings import Settings, load_settings
from consumer.tools.kafkareader import (
    OffsetRange,
    ToolError,
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)
from consumer.tools.replay import fail, open_tool_store, parse_pairs, parse_time

log = logging.getLogger(__name__)

REDRIVE_COUNT = "dlq.redrive.count"
DLQ_PREFIX = "dlq."
DEFAULT_MAX_REDRIVES = 3

# --- pure: reading a dead letter ---------------------------------------------------


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, as text (None when absent)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value.decode("utf-8", "replace") if value is not None else ""
    return found


def failed_at(letter: KafkaRecord) -> datetime:
    """When the record failed: ``dlq.failed.at``, else the dead letter's own timestamp."""
    text = header(letter.headers, "dlq.failed.at")
    if text:
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC)


def redrive_count(headers: Headers) -> int:
    """How many times this record was redriven before (0 when never, or unreadable)."""
    text = header(headers, REDRIVE_COUNT)
    try:
        return max(0, int(text)) if text is not None else 0
    except ValueError:
        return 0


# --- pure: masking personal data ---------------------------------------------------

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
_PERSONAL_KEYS = {"email", "name", "first_name", "last_name", "display_name", "phone", "address"}
_MAX_SHOWN = 300


def mask_email(local: str, domain: str) -> str:
    tld = domain.rsplit(".", 1)[-1]
    return f"{local[:1]}***@***.{tld}"


def mask_text(text: str) -> str:
    """Every email in free text masked."""
    return _EMAIL.sub(lambda m: mask_email(m[1], m[2]), text)


def mask_personal(value: str) -> str:
    """A value of a personal field (a name, an email): its first character only."""
    if _EMAIL.fullmatch(value):
        return mask_text(value)
    return f"{value[:1]}***" if value else value


def mask_json(value: Any, key: str | None = None) -> Any:
    """A JSON document with personal fields masked and emails in any string masked."""
    if isinstance(value, dict):
        return {k: mask_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v, key) for v in value]
    if isinstance(value, str):
        if key is not None and key.lower() in _PERSONAL_KEYS:
            return mask_personal(value)
        return mask_text(value)
    return value


def mask_bytes(raw: bytes | None) -> str | None:
    """A key or value for display: JSON with personal fields masked, else masked text."""
    if raw is None:
        return None
    try:
        shown = json.dumps(mask_json(json.loads(raw)), ensure_ascii=False)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        shown = mask_text(raw.decode("utf-8", "replace"))
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."


def masked_headers(headers: Headers) -> list[list[str]]:
    return [
        [name, mask_text(value.decode("utf-8", "replace")) if value is not None else ""]
        for name, value in headers
    ]


# --- pure: the list summary --------------------------------------------------------


@dataclass(slots=True)
class DlqSummary:
    """Counts by reason and original topic, oldest and newest, and the last few letters."""

    topic: str
    keep_last: int = 5
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_original_topic: Counter[str] = field(default_factory=Counter)
    oldest: tuple[datetime, int, int] | None = None
    newest: tuple[datetime, int, int] | None = None
    _last: list[tuple[int, int, int, KafkaRecord]] = field(default_factory=list)

    def add(self, letter: KafkaRecord) -> None:
        self.total += 1
        self.by_reason[header(letter.headers, "dlq.reason") or "(none)"] += 1
        self.by_original_topic[header(letter.headers, "dlq.original.topic") or "(none)"] += 1
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

    def to_json(self) -> dict[str, Any]:
        def moment(at: tuple[datetime, int, int] | None) -> dict[str, Any] | None:
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


# --- pure: redrive decisions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Criteria:
    """Which dead letters a redrive takes: every given filter must match."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before
    offsets: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) on the DLQ topic

    def matches(self, letter: KafkaRecord) -> bool:
        if self.offsets and (letter.partition, letter.offset) not in self.offsets:
            return False
        if self.reasons and header(letter.headers, "dlq.reason") not in self.reasons:
            return False
        at = failed_at(letter)
        if self.since is not None and at < self.since:
            return False
        return not (self.until is not None and at >= self.until)


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
    detail: str
    count: int


def redrive_headers(headers: Headers, count: int) -> OutgoingHeaders:
    """The original headers without the ``dlq.*`` provenance, and the new redrive count."""
    kept = [(k, v) for k, v in headers if not k.startswith(DLQ_PREFIX)]
    return [*kept, (REDRIVE_COUNT, str(count).encode())]


def decide_redrive(letter: KafkaRecord, max_redrives: int) -> Redrive | Refusal:
    """Re-publish to the original topic, unless it was redriven ``max_redrives`` times."""
    previous = redrive_count(letter.headers)
    target = header(letter.headers, "dlq.original.topic")
    if not target:
        return Refusal("no dlq.original.topic header", previous)
    if previous >= max_redrives:
        return Refusal(f"redriven {previous} times already (limit {max_redrives})", previous)
    if header(letter.headers, DROPPED):
        # Part of the record was dropped to get the dead letter written.
        return Refusal(f"the dead letter does not hold the whole record (see {DROPPED})", previous)
    if header(letter.headers, "dlq.value"):
        # Its value is not the record's own (an empty stand-in for null).
        return Refusal("the dead letter does not hold the record's value (see dlq.value)", previous)
    count = previous + 1
    return Redrive(target, letter.key, letter.value, redrive_headers(letter.headers, count), count)


def advance(position: int, handled: Iterable[tuple[int, bool]]) -> tuple[int, bool]:
    """The new position after records (offset, handled) read in order from ``position``,
    and whether it could go on (False once an unhandled record is met)."""
    for offset, done in handled:
        if not done:
            return position, False
        position = max(position, offset + 1)
    return position, True


def redrive_ranges(
    highwaters: Mapping[int, int],
    positions: Mapping[int, int],
    beginnings: Mapping[int, int],
    offsets: Iterable[tuple[int, int]] = (),
) -> dict[int, OffsetRange]:
    """Where to read: from the kept position (else the beginning) up to now; with explicit
    offsets, only their partitions, from the smallest to the largest."""
    wanted: dict[int, list[int]] = {}
    for partition, offset in offsets:
        wanted.setdefault(partition, []).append(offset)
    ranges: dict[int, OffsetRange] = {}
    for partition, high in highwaters.items():
        start = max(positions.get(partition, 0), beginnings.get(partition, 0))
        end = high
        if wanted:
            if partition not in wanted:
                continue
            start, end = min(wanted[partition]), min(high, max(wanted[partition]) + 1)
        ranges[partition] = OffsetRange(min(start, end), end)
    return ranges


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
        return "\n".join(lines)


# --- I/O at the edges -------------------------------------------------------------


async def list_dead_letters(settings: Settings, last: int = 5) -> DlqSummary:
    """Read the whole dead-letter topic up to now and summarise it."""
    summary = DlqSummary(settings.kafka_dlq_topic, keep_last=last)
    consumer = assigned_consumer(settings)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.kafka_dlq_topic)
        highs = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        ranges = {tp: OffsetRange(begins[tp], highs[tp]) for tp in tps}
        async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
            for letter in batch:
                summary.add(letter)
    finally:
        await consumer.stop()
    return summary


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    criteria: Criteria = Criteria()
    max_redrives: int = DEFAULT_MAX_REDRIVES
    dry_run: bool = False


async def redrive(settings: Settings, store: Store, request: RedriveRequest) -> RedriveReport:
    """Re-publish the matching dead letters to their original topics; keep the position."""
    topic = settings.kafka_dlq_topic
    report = RedriveReport(topic, request.dry_run, request.max_redrives)
    redrives = store.redrive_log(topic)
    async with redrives.exclusive() as alone:
        if not alone:
            raise ToolError(f"another redrive of {topic!r} is running")
        await _redrive_locked(settings, redrives, request, report)
    return report


async def _redrive_locked(
    settings: Settings, redrives: RedriveLog, request: RedriveRequest, report: RedriveReport
) -> None:
    topic = settings.kafka_dlq_topic
    positions = await redrives.positions()
    handled = await redrives.handled()
    consumer = assigned_consumer(settings)
    await consumer.start()
    producer = None
    try:
        tps = await partitions_of(consumer, topic)
        highs = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        planned = redrive_ranges(
            {tp.partition: h for tp, h in highs.items()},
            positions,
            {tp.partition: b for tp, b in begins.items()},
            request.criteria.offsets,
        )
        ranges = {TopicPartition(topic, p): r for p, r in planned.items()}
        # The position moves only over a contiguous run of handled dead letters from it.
        moving = {
            p: r.start <= max(positions.get(p, 0), begins[TopicPartition(topic, p)])
            for p, r in planned.items()
        }
        current = {p: max(positions.get(p, 0), r.start) for p, r in planned.items()}
        if not request.dry_run:
            producer = await start_producer(settings, linger_ms=5)
        async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
            rows: list[HandledLetter] = []
            deliveries = []
            flags: dict[int, list[tuple[int, bool]]] = {}
            for letter in batch:
                where = (letter.partition, letter.offset)
                done = True
                if where in handled or letter.offset < positions.get(letter.partition, 0):
                    report.already_handled += 1
                elif not request.criteria.matches(letter):
                    report.filtered_out += 1
                    done = False
                else:
                    reason = header(letter.headers, "dlq.reason") or "(none)"
                    decision = decide_redrive(letter, request.max_redrives)
                    if isinstance(decision, Refusal):
                        report.refused.append(
                            {"partition": where[0], "offset": where[1], "detail": decision.detail}
                        )
                        rows.append(
                            HandledLetter(
                                *where, "refused", reason, None, decision.count, decision.detail
                            )
                        )
                    else:
                        report.redriven[reason] += 1
                        report.redriven_to[decision.topic] += 1
                        rows.append(
                            HandledLetter(
                                *where, "redriven", reason, decision.topic, decision.count, None
                            )
                        )
                        if producer is not None:
                            deliveries.append(
                                await producer.send(
                                    decision.topic,
                                    value=decision.value,
                                    key=decision.key,
                                    headers=decision.headers,
                                )
                            )
                flags.setdefault(letter.partition, []).append((letter.offset, done))
            if request.dry_run:
                continue
            await asyncio.gather(*deliveries)
            for partition, seen in flags.items():
                if moving[partition]:
                    current[partition], moving[partition] = advance(current[partition], seen)
            await redrives.record(rows, {p: current[p] for p in flags if moving[p]})
        if not request.dry_run:
            # Gaps at the end of a range (compaction, markers) are handled too.
            await redrives.record([], {p: r.end for p, r in planned.items() if moving[p]})
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    log.info("redrive finished", extra=report.to_json() | {"refused": len(report.refused)})


# --- the commands -----------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="inspect and redrive the dead-letter topic",
        description="Tools for the dead-letter topic (KAFKA_DLQ_TOPIC).",
    )
    sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = sub.add_parser(
        "list",
        help="summarise the dead-letter topic",
        description="Counts by reason and by original topic, the oldest and newest dead "
        "letters, and the last few with their headers; personal data is masked.",
    )
    listing.add_argument("--last", type=int, default=5, help="how many recent records to show")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_cmd_list)

    again = sub.add_parser(
        "redrive",
        help="re-publish dead letters to their original topic",
        description="Re-publish matching dead letters (key, value and original headers, "
        "plus dlq.redrive.count) to the topic named by dlq.original.topic. The position is "
        "kept in PostgreSQL: a rerun picks up where the last one stopped and never redrives "
        "the same dead letter twice. Records redriven --max-redrives times are refused.",
    )
    again.add_argument(
        "--reason", action="append", default=[], help="only this dlq.reason (repeatable)"
    )
    again.add_argument("--since", help="only dead letters that failed at or after this time")
    again.add_argument("--until", help="only dead letters that failed before this time")
    again.add_argument(
        "--offsets", help="only these dead letters: partition:offset pairs on the DLQ topic"
    )
    again.add_argument(
        "--max-redrives",
        type=int,
        default=DEFAULT_MAX_REDRIVES,
        help=f"refuse records already redriven this many times (default {DEFAULT_MAX_REDRIVES})",
    )
    again.add_argument("--dry-run", action="store_true", help="publish and record nothing")
    again.add_argument("--json", action="store_true", help="print JSON")
    again.set_defaults(handler=_cmd_redrive)


def _offset_set(text: str | None) -> frozenset[tuple[int, int]]:
    if not text:
        return frozenset()
    pairs = set()
    for item in text.split(","):
        pairs |= set(parse_pairs(item).items())
    return frozenset(pairs)


def _cmd_list(args: argparse.Namespace) -> int:
    from consumer.logs import configure_logging

    if args.last < 0:
        return fail("--last must not be negative")
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        summary = asyncio.run(list_dead_letters(settings, args.last))
    except ToolError as exc:
        return fail(str(exc))
    print(json.dumps(summary.to_json(), indent=2) if args.json else summary.render())
    return 0


def _cmd_redrive(args: argparse.Namespace) -> int:
    from consumer.logs import configure_logging

    try:
        criteria = Criteria(
            reasons=frozenset(args.reason),
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            offsets=_offset_set(args.offsets),
        )
    except ValueError as exc:
        return fail(str(exc))
    if args.max_redrives < 0:
        return fail("--max-redrives must not be negative")
    request = RedriveRequest(criteria, args.max_redrives, args.dry_run)
    settings = load_settings()
    configure_logging(settings.log_level)

    async def main() -> RedriveReport:
        store = await open_tool_store(settings)
        try:
            return await redrive(settings, store, request)
        finally:
            await store.close()

    try:
        report = asyncio.run(main())
    except ToolError as exc:
        return fail(str(exc))
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 0
