"""The ``dlq list``, ``dlq show`` and ``dlq redrive`` command lines, run through the tools'
runner."""

from __future__ import annotations

import argparse
from dataclasses import replace

from consumer.settings import Settings
from consumer.tools.arguments import (
    PAIRS,
    accept_negative_values,
    named,
    parse_pairs,
    parse_position,
    parse_time,
)
from consumer.tools.clients import tool_store
from consumer.tools.dlq.criteria import REASONS, Criteria, parse_reasons
from consumer.tools.dlq.listing import DEFAULT_LAST, DlqSummary, ListRequest, list_dead_letters
from consumer.tools.dlq.redrive import RedriveRequest, redrive
from consumer.tools.dlq.redrive_rules import DEFAULT_MAX_REDRIVES, RedriveReport
from consumer.tools.dlq.show import ShownLetter, ShowRequest, show_dead_letter
from consumer.tools.errors import BadArgument
from consumer.tools.runner import add_tool

_REASON_HELP = f"only dead letters with this dlq.reason, one of {', '.join(REASONS)} (repeatable)"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="inspect and redrive the dead-letter topic",
        description="Tools for the dead-letter topic (KAFKA_DLQ_TOPIC).",
    )
    sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    _add_list(sub)
    _add_show(sub)
    _add_redrive(sub)


def _add_list(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = add_tool(
        sub,
        "list",
        _list_request,
        _list,
        help="list and count the dead letters",
        description="Read the dead-letter topic up to now: counts by reason and by original "
        "topic, the oldest and newest failure, and a table of the last dead letters (newest "
        "last) with their reason, source and errors. Personal data is masked.",
    )
    listing.epilog = (
        "Exit codes: 0 listed; 1 Kafka answered an error mid-way; 2 could not run (a bad "
        "argument, Kafka unreachable, a missing dead-letter topic). See docs/replay.md."
    )
    listing.add_argument("--reason", action="append", default=[], help=_REASON_HELP)
    listing.add_argument(
        "--source", help="only dead letters of events with this CloudEvent source (exact)"
    )
    _add_times(listing)
    listing.add_argument(
        "--last",
        type=int,
        default=DEFAULT_LAST,
        metavar="N",
        help=f"how many of the matching dead letters to show (default {DEFAULT_LAST})",
    )


def _add_show(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = add_tool(
        sub,
        "show",
        _show_request,
        _show,
        help="show one dead letter",
        description="One dead letter: its provenance (the dlq.* headers), its errors, its "
        "other headers, its key and its value. Emails and names are masked unless "
        "--reveal. Exits 1 when there is no dead letter at that position.",
    )
    show.epilog = (
        "Exit codes: 0 shown; 1 no dead letter at that position, or Kafka answered an error; "
        "2 could not run (a bad PARTITION:OFFSET, a partition the topic does not have, Kafka "
        "unreachable, a missing dead-letter topic). See docs/replay.md."
    )
    accept_negative_values(show)
    show.add_argument(
        "where", metavar="PARTITION:OFFSET", help="its position on the dead-letter topic"
    )
    show.add_argument(
        "--reveal", action="store_true", help="show emails and names as they are (not masked)"
    )


def _add_redrive(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    again = add_tool(
        sub,
        "redrive",
        _redrive_request,
        _redrive,
        help="re-publish dead letters to their original topic",
        description="Re-publish matching dead letters (key, value and original headers, "
        "plus dlq.redrive.count) to the topic named by dlq.original.topic. The position is "
        "kept in PostgreSQL: a rerun picks up where the last one stopped and never redrives "
        "the same dead letter twice. Records redriven --max-redrives times are refused, "
        "until a run with a higher --max-redrives.",
    )
    again.epilog = (
        "Exit codes: 0 redriven (or would be, on a dry run); 1 some dead letters refused, or "
        "PostgreSQL or Kafka answered an error mid-way; 2 could not run (a bad argument, a "
        "partition the topic does not have, PostgreSQL or Kafka unreachable, another redrive "
        "running, a schema behind on a dry run). See docs/replay.md."
    )
    accept_negative_values(again)
    again.add_argument("--reason", action="append", default=[], help=_REASON_HELP)
    _add_times(again)
    again.add_argument(
        "--offsets",
        metavar="P:O,...",
        help="only these dead letters: partition:offset pairs on the DLQ topic",
    )
    again.add_argument(
        "--max-redrives",
        type=int,
        default=DEFAULT_MAX_REDRIVES,
        metavar="N",
        help=f"refuse records already redriven this many times (default {DEFAULT_MAX_REDRIVES})",
    )
    again.add_argument("--dry-run", action="store_true", help="publish and record nothing")


def _add_times(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only dead letters that failed (dlq.failed.at) at or after this RFC 3339 time, "
        "e.g. 2026-01-02T00:00:00Z",
    )
    parser.add_argument(
        "--until", metavar="TIME", help="only dead letters that failed before this RFC 3339 time"
    )


def _criteria(args: argparse.Namespace) -> Criteria:
    """The filters both commands take: --reason, --since, --until."""
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    if since is not None and until is not None and until <= since:
        raise BadArgument(
            f"{named('--since', args.since)} is not before {named('--until', args.until)}"
        )
    return Criteria(reasons=parse_reasons(args.reason), since=since, until=until)


def _list_request(args: argparse.Namespace) -> ListRequest:
    if args.last < 0:
        raise BadArgument(f"--last '{args.last}' is negative: give 0 or more")
    return ListRequest(replace(_criteria(args), source=args.source), args.last)


async def _list(settings: Settings, request: ListRequest) -> DlqSummary:
    return await list_dead_letters(settings, request)


def _show_request(args: argparse.Namespace) -> ShowRequest:
    partition, offset = parse_position(args.where, "dlq show")
    return ShowRequest(partition, offset, args.reveal)


async def _show(settings: Settings, request: ShowRequest) -> ShownLetter:
    return await show_dead_letter(settings, request)


def _redrive_request(args: argparse.Namespace) -> RedriveRequest:
    criteria = replace(_criteria(args), offsets=_offset_set(args.offsets))
    if args.max_redrives < 0:
        raise BadArgument(f"--max-redrives '{args.max_redrives}' is negative: give 0 or more")
    return RedriveRequest(criteria, args.max_redrives, args.dry_run, args.offsets or "")


def _offset_set(text: str | None) -> frozenset[tuple[int, int]]:
    if not text:
        return frozenset()
    if not PAIRS.match(text):
        parse_pairs(text, "--offsets")  # refuses it, saying why
    # Several offsets of one partition are fine here, unlike in parse_pairs.
    return frozenset(parse_position(item) for item in text.split(","))


async def _redrive(settings: Settings, request: RedriveRequest) -> RedriveReport:
    async with tool_store(settings, migrate=not request.dry_run) as store:
        return await redrive(settings, store, request)
