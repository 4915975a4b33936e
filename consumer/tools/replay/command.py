"""The ``replay`` command line: its arguments, and the run through the tools' runner."""

from __future__ import annotations

import argparse

from consumer.settings import Settings
from consumer.tools.common import tool_store
from consumer.tools.replay.apply import ReplayRequest, replay
from consumer.tools.replay.ranges import parse_from, parse_to
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


def _request(args: argparse.Namespace) -> ReplayRequest:
    return ReplayRequest(parse_from(args.start), parse_to(args.end), args.topic, args.dry_run)


async def _replay(settings: Settings, request: ReplayRequest) -> ReplaySummary:
    async with tool_store(settings, migrate=not request.dry_run) as store:
        return await replay(settings, store, request, interactive=None)
