"""The ``replay`` command line: its arguments, and the run through the tools' runner."""

from __future__ import annotations

import argparse

from consumer.settings import Settings
from consumer.tools.arguments import accept_negative_values
from consumer.tools.clients import tool_store
from consumer.tools.replay.apply import ReplayRequest, replay
from consumer.tools.replay.ranges import check_order, parse_from, parse_to
from consumer.tools.replay.summary import ReplaySummary
from consumer.tools.runner import add_tool


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "replay",
        _request,
        _replay,
        help="re-apply a range of the topic, beside the live consumer",
        description="Read a range of the topic by partition assignment (no consumer group, "
        "no offsets written) and apply it through the same idempotent, ordered path as `run`. "
        "Prints a summary per partition: read, applied, duplicate, stale, dead-lettered.",
    )
    parser.epilog = (
        "Exit codes: 0 replayed; 1 PostgreSQL or Kafka answered an error mid-way; 2 could "
        "not run (a bad argument, --from not before --to, a --from offset past the end, an "
        "unknown topic or partition, PostgreSQL or Kafka "
        "unreachable, a schema behind on a dry run). See docs/replay.md."
    )
    accept_negative_values(parser)
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="{earliest,TIME,P:O,...}",
        help="where to start: 'earliest'; an RFC 3339 time with its offset, such as "
        "2026-01-01T00:00:00Z; or partition:offset pairs, such as 0:120,2:0 (only those "
        "partitions). Required",
    )
    parser.add_argument(
        "--to",
        dest="end",
        default="now",
        metavar="{now,TIME}",
        help="where to stop (exclusive): an RFC 3339 time, or 'now': the high watermarks "
        "when the replay starts (default: now)",
    )
    parser.add_argument(
        "--topic", metavar="TOPIC", help="the topic to replay (default: KAFKA_TOPIC)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="decide everything in transactions that are rolled back; send no dead letters, "
        "apply no migration (exit 2 if the schema is behind). Default: off",
    )


def _request(args: argparse.Namespace) -> ReplayRequest:
    start, end = parse_from(args.start), parse_to(args.end)
    given = (args.start, args.end)
    check_order(start, end, given)
    return ReplayRequest(start, end, args.topic, args.dry_run, given)


async def _replay(settings: Settings, request: ReplayRequest) -> ReplaySummary:
    async with tool_store(settings, migrate=not request.dry_run) as store:
        return await replay(settings, store, request, interactive=None)
