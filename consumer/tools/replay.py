"""``user-events-consumer replay``: re-apply a range of the topic through the live write path.

    --from/--to  ->  offset ranges (pure, after the lookups)  ->  read by assignment
      -> split_batch (pure)  ->  Store.batch() + BatchWriter.apply  ->  dead letters
      -> a summary per partition

The replay joins no consumer group and never writes the live group's offsets, so the
live consumer is not disturbed. Its writes go through the same idempotent, ordered
path as ``run`` (per-user advisory locks, dedupe on (source, id), last-writer-wins per
field), so a replay beside the live consumer leaves the state a single pass would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import OffsetAndTimestamp

from consumer.core.ordering import BatchPlan
from consumer.core.records import KafkaRecord, Outcome
from consumer.edges.deadletter import DeadLetter, DeadLetterQueue
from consumer.edges.kafka import max_request_bytes, start_producer
from consumer.edges.store import Store
from consumer.pipeline.batches import split_batch, write_batch
from consumer.settings import Settings, load_settings
from consumer.tools.kafkareader import (
    OffsetRange,
    ToolError,
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)

log = logging.getLogger(__name__)

Earliest = Literal["earliest"]
Now = Literal["now"]
Start = Earliest | datetime | dict[int, int]
End = Now | datetime

_PAIRS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")


# --- pure decisions ---------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+hh:mm``)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +hh:mm)")
    return moment


def parse_pairs(text: str) -> dict[int, int]:
    """``"0:10,2:5"`` -> {0: 10, 2: 5}."""
    if not _PAIRS.match(text):
        raise ValueError(f"{text!r} is not a list of partition:offset pairs")
    pairs: dict[int, int] = {}
    for item in text.split(","):
        partition, offset = (int(part) for part in item.split(":"))
        if partition in pairs:
            raise ValueError(f"partition {partition} is given twice")
        pairs[partition] = offset
    return pairs


def parse_from(text: str) -> Start:
    """``earliest``, explicit ``partition:offset`` pairs, or an RFC 3339 time."""
    if text.strip() == "earliest":
        return "earliest"
    if _PAIRS.match(text):
        return parse_pairs(text)
    return parse_time(text)


def parse_to(text: str) -> End:
    """``now`` (the high watermarks when the replay starts) or an RFC 3339 time."""
    return "now" if text.strip() == "now" else parse_time(text)


def time_lookup_answer(
    offset: int | None, timestamp: int | None, target_ms: int, highwater: int
) -> int | None:
    """The offset the broker's offset-for-time answer gives, or None when it must be searched.

    Kafka answers the first offset whose timestamp is at or after the target, with that
    record's timestamp, or nothing when no record is that recent (then: the end). An
    answer without a timestamp (-1), or with one older than the target, is no answer.
    """
    if offset is None:
        return highwater
    if timestamp is None or timestamp < 0 or timestamp < target_ms:
        return None
    return min(offset, highwater)


def first_offset_at_or_after(records: Iterable[tuple[int, int]], target_ms: int) -> int | None:
    """The first (offset, timestamp) at or after the target time, in offset order."""
    for offset, timestamp in records:
        if timestamp >= target_ms:
            return offset
    return None


def plan_ranges(
    partitions: Sequence[int],
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    highwaters: Mapping[int, int],
) -> dict[int, OffsetRange]:
    """Per partition: start (0 when unknown) to end, both clamped to the high watermark."""
    planned: dict[int, OffsetRange] = {}
    for partition in partitions:
        high = highwaters[partition]
        end = min(ends.get(partition, high), high)
        start = min(max(0, starts.get(partition, 0)), end)
        planned[partition] = OffsetRange(start, end)
    return planned


def check_pairs(pairs: Mapping[int, int], partitions: Sequence[int], topic: str) -> None:
    missing = sorted(set(pairs) - set(partitions))
    if missing:
        raise ToolError(f"topic {topic!r} has no partition {missing[0]}")


@dataclass(slots=True)
class PartitionSummary:
    """What a replay did on one partition."""

    start: int = 0
    end: int = 0
    read: int = 0
    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class ReplaySummary:
    topic: str
    dry_run: bool
    partitions: dict[int, PartitionSummary] = field(default_factory=dict)

    def total(self) -> PartitionSummary:
        total = PartitionSummary()
        for part in self.partitions.values():
            for name in ("read", "applied", "duplicate", "stale", "dead_lettered"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
        return total

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "dry_run": self.dry_run,
            "partitions": {str(p): asdict(s) for p, s in sorted(self.partitions.items())},
            "total": {k: v for k, v in asdict(self.total()).items() if k not in ("start", "end")},
        }

    def render(self) -> str:
        head = f"{'partition':>9} {'from':>10} {'to':>10} " + " ".join(
            f"{n:>13}" for n in ("read", "applied", "duplicate", "stale", "dead_lettered")
        )
        lines = [f"replay of {self.topic}{' (dry run: nothing written)' if self.dry_run else ''}"]
        lines.append(head)
        for partition, s in sorted(self.partitions.items()):
            counts = (s.read, s.applied, s.duplicate, s.stale, s.dead_lettered)
            lines.append(
                f"{partition:>9} {s.start:>10} {s.end:>10} " + " ".join(f"{n:>13}" for n in counts)
            )
        t = self.total()
        counts = (t.read, t.applied, t.duplicate, t.stale, t.dead_lettered)
        lines.append(f"{'total':>9} {'':>10} {'':>10} " + " ".join(f"{n:>13}" for n in counts))
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
    for record, _ in dead:
        summary.partitions[record.partition].dead_lettered += 1


# --- progress ---------------------------------------------------------------------


class Progress(Protocol):
    def advance(self, summary: ReplaySummary) -> None: ...
    def close(self) -> None: ...


class LineProgress:
    """Not a terminal: one log line every ``every`` seconds, and one at the end."""

    def __init__(self, total: int, every: float = 5.0) -> None:
        self.total, self.every = total, every
        self.started = self.last = time.monotonic()
        self.summary: ReplaySummary | None = None

    def advance(self, summary: ReplaySummary) -> None:
        self.summary = summary
        if time.monotonic() - self.last >= self.every:
            self._line()

    def close(self) -> None:
        if self.summary is not None:
            self._line()

    def _line(self) -> None:
        assert self.summary is not None
        self.last = time.monotonic()
        t = self.summary.total()
        elapsed = max(self.last - self.started, 1e-6)
        log.info(
            "replay progress",
            extra={
                "read": t.read,
                "of": self.total,
                "applied": t.applied,
                "duplicate": t.duplicate,
                "stale": t.stale,
                "dead_lettered": t.dead_lettered,
                "records_per_second": round(t.read / elapsed, 1),
            },
        )


class BarProgress:
    """A terminal: a rich progress bar with the counts and the rate."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]} rec/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("replay", total=total, counts="", rate="0")
        self._bar.start()

    def advance(self, summary: ReplaySummary) -> None:
        t = summary.total()
        task = self._bar.tasks[0]
        self._bar.update(
            self._task,
            completed=t.read,
            counts=f"applied {t.applied} dup {t.duplicate} stale {t.stale} dead {t.dead_lettered}",
            rate=f"{task.speed or 0:,.0f}",
        )

    def close(self) -> None:
        self._bar.stop()


def make_progress(total: int, interactive: bool | None = None) -> Progress:
    if interactive is None:
        interactive = sys.stderr.isatty()
    return BarProgress(total) if interactive else LineProgress(total)


# --- I/O at the edges -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    start: Start
    end: End = "now"
    topic: str | None = None
    dry_run: bool = False


async def offset_for_time(
    consumer: AIOKafkaConsumer, tp: TopicPartition, moment: datetime, highwater: int
) -> int:
    """The first offset at or after ``moment``: the broker's answer, else a search."""
    target = int(moment.timestamp() * 1000)
    try:
        answer = (await consumer.offsets_for_times({tp: target})).get(tp)
    except UnsupportedVersionError:
        answer = OffsetAndTimestamp(0, -1)
    offset = time_lookup_answer(
        answer.offset if answer else None, answer.timestamp if answer else None, target, highwater
    )
    if offset is not None:
        return offset
    log.info(
        "the broker answered the offset-for-time lookup without a timestamp; "
        "searching by fetching records",
        extra={"topic": tp.topic, "partition": tp.partition},
    )
    return await _search_by_fetching(consumer, tp, target, highwater)


async def _search_by_fetching(
    consumer: AIOKafkaConsumer, tp: TopicPartition, target_ms: int, highwater: int
) -> int:
    """Scan the partition from its beginning for the first record at or after the time.

    A scan, not a bisection: producer timestamps need not grow with offsets, and Kafka's
    own lookup answers the first such offset.
    """
    begin = (await consumer.beginning_offsets([tp]))[tp]
    async for batch in read_ranges(consumer, {tp: OffsetRange(begin, highwater)}, 5000):
        found = first_offset_at_or_after(((r.offset, r.timestamp_ms) for r in batch), target_ms)
        if found is not None:
            return found
    return highwater


async def resolve_ranges(
    consumer: AIOKafkaConsumer, topic: str, start: Start, end: End
) -> dict[TopicPartition, OffsetRange]:
    """Turn --from/--to into an offset range per partition, ending at or before now."""
    tps = await partitions_of(consumer, topic)
    numbers = [tp.partition for tp in tps]
    if isinstance(start, dict):
        check_pairs(start, numbers, topic)
        tps = [tp for tp in tps if tp.partition in start]
        numbers = [tp.partition for tp in tps]
    highwaters = {tp.partition: h for tp, h in (await high_watermarks(consumer, tps)).items()}
    starts: dict[int, int] = {}
    if isinstance(start, dict):
        starts = dict(start)
    elif isinstance(start, datetime):
        for tp in tps:
            starts[tp.partition] = await offset_for_time(
                consumer, tp, start, highwaters[tp.partition]
            )
    else:
        begins = await consumer.beginning_offsets(tps)
        starts = {tp.partition: begins[tp] for tp in tps}
    ends: dict[int, int] = {}
    if isinstance(end, datetime):
        for tp in tps:
            ends[tp.partition] = await offset_for_time(consumer, tp, end, highwaters[tp.partition])
    planned = plan_ranges(numbers, starts, ends, highwaters)
    return {TopicPartition(topic, p): r for p, r in planned.items()}


async def replay(
    settings: Settings,
    store: Store,
    request: ReplayRequest,
    interactive: bool | None = False,
) -> ReplaySummary:
    """Replay the range; returns the summary. Dead letters go to the DLQ unless dry run."""
    topic = request.topic or settings.kafka_topic
    group = f"{settings.kafka_group_id}-replay"
    consumer = assigned_consumer(settings)
    await consumer.start()
    producer = None
    try:
        ranges = await resolve_ranges(consumer, topic, request.start, request.end)
        summary = ReplaySummary(topic, request.dry_run)
        for tp, r in ranges.items():
            summary.partitions[tp.partition] = PartitionSummary(start=r.start, end=r.end)
        log.info(
            "replaying",
            extra={
                "topic": topic,
                "dry_run": request.dry_run,
                "ranges": {tp.partition: [r.start, r.end] for tp, r in ranges.items()},
            },
        )
        dead_letters = None
        if not request.dry_run:
            producer = await start_producer(settings, linger_ms=5)
            dead_letters = DeadLetterQueue(
                producer, settings.kafka_dlq_topic, group, max_request_bytes(settings)
            )
        progress = make_progress(sum(r.size for r in ranges.values()), interactive)
        try:
            async for records in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
                plan, dead = await _apply_batch(store, records, settings, dead_letters)
                tally(summary, records, plan, dead)
                progress.advance(summary)
        finally:
            progress.close()
        return summary
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()


async def _apply_batch(
    store: Store,
    records: Sequence[KafkaRecord],
    settings: Settings,
    dead_letters: DeadLetterQueue | None,
) -> tuple[BatchPlan, list[DeadLetter]]:
    """One batch through the live write path; rolled back when ``dead_letters`` is None."""
    accepted, poison, _ = split_batch(records, settings.max_message_bytes)
    return await write_batch(store, accepted, poison, dead_letters)


# --- the command ------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="re-apply a range of the topic, beside the live consumer",
        description="Read a range of the topic by partition assignment (no consumer group, "
        "no offsets written) and apply it through the same idempotent, ordered path as `run`. "
        "Prints a summary per partition: read, applied, duplicate, stale, dead-lettered.",
    )
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        help="an RFC 3339 time, 'earliest', or partition:offset pairs such as 0:120,2:0",
    )
    parser.add_argument(
        "--to",
        dest="end",
        default="now",
        help="an RFC 3339 time (exclusive), or 'now': the high watermarks at the start (default)",
    )
    parser.add_argument("--topic", help="the topic to replay (default: KAFKA_TOPIC)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="decide everything in transactions that are rolled back; send no dead letters",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    from consumer.logs import configure_logging

    try:
        start, end = parse_from(args.start), parse_to(args.end)
    except ValueError as exc:
        return fail(str(exc))
    request = ReplayRequest(start, end, args.topic, args.dry_run)
    settings = load_settings()
    configure_logging(settings.log_level)

    async def main() -> ReplaySummary:
        store = await open_tool_store(settings)
        try:
            return await replay(settings, store, request, interactive=None)
        finally:
            await store.close()

    try:
        summary = asyncio.run(main())
    except ToolError as exc:
        return fail(str(exc))
    print(json.dumps(summary.to_json(), indent=2) if args.json else summary.render())
    return 0


async def open_tool_store(settings: Settings) -> Store:
    """The pool for a tool, with the shipped migrations applied (idempotent, locked)."""
    from consumer.edges.migrate import apply_migrations

    store = await Store.open(settings)
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
    except BaseException:
        await store.close()
        raise
    return store


def fail(message: str) -> int:
    """A CLI error: one line on stderr, exit 2."""
    print(f"user-events-consumer: {message}", file=sys.stderr)
    return 2


__all__ = ["ReplayRequest", "ReplaySummary", "add_parser", "replay"]
