"""The ``dlq list`` and ``dlq redrive`` command lines, run through the tools' runner."""

from __future__ import annotations

import argparse

from consumer.settings import Settings
from consumer.tools.common import BadArgument, parse_pairs, parse_time, tool_store
from consumer.tools.dlq.listing import DlqSummary, list_dead_letters
from consumer.tools.dlq.redrive import RedriveRequest, redrive
from consumer.tools.dlq.redrive_rules import DEFAULT_MAX_REDRIVES, Criteria, RedriveReport
from consumer.tools.runner import add_tool


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="inspect and redrive the dead-letter topic",
        description="Tools for the dead-letter topic (KAFKA_DLQ_TOPIC).",
    )
    sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = add_tool(
        sub,
        "list",
        _last,
        _list,
        help="summarise the dead-letter topic",
        description="Counts by reason and by original topic, the oldest and newest dead "
        "letters, and the last few with their headers; personal data is masked.",
    )
    listing.add_argument("--last", type=int, default=5, help="how many recent records to show")
    listing.add_argument("--json", action="store_true", help="print JSON")

    again = add_tool(
        sub,
        "redrive",
        _redrive_request,
        _redrive,
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


def _last(args: argparse.Namespace) -> int:
    if args.last < 0:
        raise BadArgument("--last must not be negative")
    last: int = args.last
    return last


async def _list(settings: Settings, last: int) -> DlqSummary:
    return await list_dead_letters(settings, last)


def _redrive_request(args: argparse.Namespace) -> RedriveRequest:
    criteria = Criteria(
        reasons=frozenset(args.reason),
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        offsets=_offset_set(args.offsets),
    )
    if args.max_redrives < 0:
        raise BadArgument("--max-redrives must not be negative")
    return RedriveRequest(criteria, args.max_redrives, args.dry_run)


def _offset_set(text: str | None) -> frozenset[tuple[int, int]]:
    if not text:
        return frozenset()
    pairs = set()
    for item in text.split(","):
        pairs |= set(parse_pairs(item).items())
    return frozenset(pairs)


async def _redrive(settings: Settings, request: RedriveRequest) -> RedriveReport:
    async with tool_store(settings, migrate=not request.dry_run) as store:
        return await redrive(settings, store, request)
