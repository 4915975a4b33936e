"""``dlq redrive``: re-publish dead letters to their original topics, once each.

The state lives in PostgreSQL (``RedriveLog``): every dead letter handled (redriven or
refused), and per partition the offset before which every one is handled. A rerun
starts at that position and skips what it already handled, so the same dead letter is
never redriven twice by accident; it reads from further back only for dead letters
refused at a lower ``--max-redrives`` than its own, which it redrives. A dead letter is
re-published before its row is written: a crash between the two can re-publish it once
more, which the consumer absorbs as a duplicate (same source and id).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from consumer.core.records import KafkaRecord
from consumer.edges.store import Store
from consumer.edges.store_redrive import HandledLetter, RedriveLog
from consumer.settings import Settings
from consumer.tools.arguments import check_partitions, named
from consumer.tools.clients import tool_producer
from consumer.tools.dlq.criteria import Criteria
from consumer.tools.dlq.letters import reason_of
from consumer.tools.dlq.redrive_rules import (
    DEFAULT_MAX_REDRIVES,
    Handled,
    KeptPositions,
    Redrive,
    RedriveReport,
    Refusal,
    decide_redrive,
    redrive_ranges,
)
from consumer.tools.errors import BadArgument, ToolError
from consumer.tools.kafkareader import (
    assigned_consumer,
    high_watermarks,
    partitions_of,
    read_ranges,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    criteria: Criteria = field(default_factory=Criteria)
    max_redrives: int = DEFAULT_MAX_REDRIVES
    dry_run: bool = False
    offsets_given: str = ""  # --offsets as typed, to quote in a refusal


async def redrive(settings: Settings, store: Store, request: RedriveRequest) -> RedriveReport:
    """Re-publish the matching dead letters to their original topics; keep the position."""
    topic = settings.kafka_dlq_topic
    report = RedriveReport(topic, request.dry_run, request.max_redrives)
    redrives = store.redrive_log(topic)
    async with redrives.exclusive() as alone:
        if not alone:
            raise ToolError(f"another redrive of {topic!r} is running")
        await _redrive_alone(settings, redrives, request, report)
    log.info("redrive finished", extra=report.to_json() | {"refused": len(report.refused)})
    return report


async def _redrive_alone(
    settings: Settings, redrives: RedriveLog, request: RedriveRequest, report: RedriveReport
) -> None:
    topic = redrives.topic
    positions = await redrives.positions()
    handled = Handled.of(await redrives.handled(), request.max_redrives)
    report.waiting_at_limit = handled.waiting
    async with assigned_consumer(settings) as consumer:
        tps = await partitions_of(consumer, topic)
        highs = await high_watermarks(consumer, tps)
        _check_offsets(request, {tp.partition: h for tp, h in highs.items()}, topic)
        begins = {tp.partition: b for tp, b in (await consumer.beginning_offsets(tps)).items()}
        planned = redrive_ranges(
            {tp.partition: h for tp, h in highs.items()},
            positions,
            begins,
            request.criteria.offsets,
            handled.retried_from(),
        )
        kept = KeptPositions.start(planned, positions, begins)
        ranges = {TopicPartition(topic, p): r for p, r in planned.items()}
        async with tool_producer(settings, enabled=not request.dry_run) as producer:
            async for batch in read_ranges(consumer, ranges, settings.kafka_max_poll_records):
                rows: list[HandledLetter] = []
                deliveries = []
                seen: dict[int, list[tuple[int, bool]]] = {}
                for letter in batch:
                    done = True
                    where = (letter.partition, letter.offset)
                    again = where in handled.retry
                    if not again and (
                        where in handled.skip or letter.offset < positions.get(letter.partition, 0)
                    ):
                        report.already_handled += 1
                    elif not request.criteria.matches(letter):
                        report.filtered_out += 1
                        done = False
                    else:
                        reason = reason_of(letter)
                        decision = decide_redrive(letter, request.max_redrives)
                        report.count(letter, reason, decision)
                        rows.append(_handled(letter, reason, decision))
                        if producer is not None and isinstance(decision, Redrive):
                            deliveries.append(
                                await producer.send(
                                    decision.topic,
                                    value=decision.value,
                                    key=decision.key,
                                    headers=decision.headers,
                                )
                            )
                    seen.setdefault(letter.partition, []).append((letter.offset, done))
                if producer is None:
                    continue  # a dry run records nothing
                await asyncio.gather(*deliveries)
                await redrives.record(rows, kept.advance(seen))
            if producer is not None:
                await redrives.record([], kept.ends(planned))


def _check_offsets(request: RedriveRequest, highs: dict[int, int], topic: str) -> None:
    """``BadArgument`` when --offsets names a partition the topic lacks, or an offset
    at or past its end (no dead letter is there yet)."""
    wanted = request.criteria.offsets
    given = request.offsets_given or ",".join(f"{p}:{o}" for p, o in sorted(wanted))
    check_partitions("--offsets", given, (p for p, _ in wanted), highs, topic)
    for partition, offset in sorted(wanted):
        if offset >= highs[partition]:
            raise BadArgument(
                f"{named('--offsets', given)}: offset {offset} is past the end of partition "
                f"{partition} of {topic!r} (its end offset is {highs[partition]})"
            )


def _handled(letter: KafkaRecord, reason: str, decision: Redrive | Refusal) -> HandledLetter:
    """The row that says what became of ``letter``."""
    where = (letter.partition, letter.offset)
    if isinstance(decision, Refusal):
        return HandledLetter(
            *where, "refused", reason, None, decision.count, decision.detail, decision.at_limit
        )
    return HandledLetter(*where, "redriven", reason, decision.topic, decision.count, None)
