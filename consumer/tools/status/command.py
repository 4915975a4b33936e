"""The ``status`` command line, run through the tools' runner."""

from __future__ import annotations

import argparse
import math

from consumer.settings import Settings
from consumer.tools.clients import tool_store
from consumer.tools.errors import BadArgument
from consumer.tools.runner import add_tool
from consumer.tools.status.gather import gather_status
from consumer.tools.status.report import StatusReport


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "status",
        _max_lag,
        _status,
        help="where each partition stands: offsets, lag in records and seconds, owners",
        description="For KAFKA_TOPIC and KAFKA_GROUP_ID, per partition: the offset stored in "
        "PostgreSQL, the group's committed offset in Kafka, the high watermark, the lag in "
        "records and in seconds (the age of the oldest record not yet applied), the member "
        "that owns it (when the group is stable and the broker says), and the time of the "
        "last commit; then how many events are parked in PostgreSQL, waiting for their "
        "user's create or for their email to be freed (per reason, and the age of the "
        "oldest). Joins no group and changes nothing, not even the schema.",
    )
    parser.epilog = (
        "Exit codes: 0 shown; 1 a partition lags more than --max-lag-seconds, or its stored "
        "offset lies past the end of its log (parked events never make it 1); 2 could not "
        "run (a bad argument, PostgreSQL or Kafka unreachable, a missing topic, a schema "
        "behind). See docs/replay.md."
    )
    parser.add_argument(
        "--max-lag-seconds",
        type=float,
        metavar="SECONDS",
        help="exit 1 when a partition lags more than SECONDS (a number, such as 300); "
        "default: no limit, exit 0",
    )


def _max_lag(args: argparse.Namespace) -> float | None:
    limit: float | None = args.max_lag_seconds
    if limit is not None and (not math.isfinite(limit) or limit < 0):
        raise BadArgument("--max-lag-seconds must be a number of seconds, 0 or more")
    return limit


async def _status(settings: Settings, max_lag_seconds: float | None) -> StatusReport:
    async with tool_store(settings, migrate=False) as store:
        return await gather_status(settings, store, max_lag_seconds)
