"""The ``event`` command line, run through the tools' runner."""

from __future__ import annotations

import argparse

from consumer.settings import Settings
from consumer.tools.arguments import accept_negative_values
from consumer.tools.clients import tool_store
from consumer.tools.event.answer import EventAnswer
from consumer.tools.event.lookup import find_event
from consumer.tools.event.query import ByKey, ByPosition, parse_query
from consumer.tools.runner import add_tool


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "event",
        _query,
        _event,
        help="what became of one event: applied, stale, duplicate, parked, dead-lettered, "
        "or none of these",
        description="Look an event up by its CloudEvents source and id, or by its position "
        "in the topic: its row in the event log (outcome, user, type, Kafka position, when "
        "recorded, and how long it waited parked before it healed), its row in the parked "
        "events (why it waits, for what, since when) and its dead letters (reason, error, "
        "original position). Joins no group and changes nothing, not even the schema.",
    )
    accept_negative_values(parser)  # --at -1:0 is refused by the tool, in one line
    parser.epilog = (
        "Exit codes: 0 found (applied, stale, duplicate, parked or dead-lettered); 1 not "
        "found, or at a position the consumer has not reached; 2 could not run (a bad "
        "question, no "
        "record at the position, PostgreSQL or Kafka unreachable, a schema behind). See "
        "docs/replay.md."
    )
    parser.add_argument(
        "--source", metavar="SOURCE", help="the event's CloudEvents source, such as /signup"
    )
    parser.add_argument(
        "--id", dest="event_id", metavar="ID", help="the event's CloudEvents id (with --source)"
    )
    parser.add_argument(
        "--at",
        metavar="PARTITION:OFFSET",
        help="instead of --source and --id: the record at this position, such as 3:1200, "
        "decoded as the consumer decodes it",
    )
    parser.add_argument(
        "--topic", help="the topic --at reads (default: KAFKA_TOPIC)", metavar="TOPIC"
    )


def _query(args: argparse.Namespace) -> ByKey | ByPosition:
    return parse_query(args.source, args.event_id, args.at, args.topic)


async def _event(settings: Settings, query: ByKey | ByPosition) -> EventAnswer:
    async with tool_store(settings, migrate=False) as store:
        return await find_event(settings, store, query)
