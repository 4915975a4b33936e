"""``user-events-consumer prune``: drop the event log's days recorded before a horizon.

Each day of the log is a partition; a prune drops the days wholly before the horizon in
one transaction, records it in ``log_prunes``, and costs the same whatever their size.
``LOG_RETENTION`` makes the service do the same on a schedule.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumer.core.durations import parse_duration
from consumer.edges.store_log import Prune, prune
from consumer.settings import Settings
from consumer.tools.arguments import parse_time
from consumer.tools.clients import tool_store
from consumer.tools.display import utc_text
from consumer.tools.errors import BadArgument
from consumer.tools.runner import add_tool


@dataclass(frozen=True, slots=True)
class PruneRequest:
    horizon: datetime
    dry_run: bool


def parse_request(
    before: str | None, older_than: str | None, dry_run: bool, now: datetime
) -> PruneRequest:
    """The horizon from ``--before`` or ``--older-than`` (one of them), never after now."""
    if (before is None) == (older_than is None):
        raise BadArgument("give one of --before TIMESTAMP and --older-than DURATION")
    if before is not None:
        horizon = parse_time(before, "--before")
    else:
        assert older_than is not None
        try:
            horizon = now - parse_duration(older_than)
        except ValueError as exc:
            raise BadArgument(f"--older-than {exc}") from None
    if horizon > now:
        raise BadArgument(f"the horizon {utc_text(horizon)} is in the future")
    return PruneRequest(horizon, dry_run)


@dataclass(frozen=True, slots=True)
class PruneReport:
    dry_run: bool
    pruned: Prune

    @property
    def complete(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        p = self.pruned
        return {
            "dry_run": self.dry_run,
            "horizon": utc_text(p.horizon, "microseconds"),
            "days": [str(day) for day in p.days],
            "rows": p.rows,
            "rows_estimated": p.rows_estimated,
            "pruned": p.done,
        }

    def render(self) -> str:
        p = self.pruned
        horizon = utc_text(p.horizon)
        if not p.days:
            return f"nothing to prune: no day of the log lies wholly before {horizon}"
        rows = f"{'about ' if p.rows_estimated else ''}{p.rows} rows"
        days = str(p.days[0]) if len(p.days) == 1 else f"{p.days[0]} to {p.days[-1]}"
        verb = "would drop" if self.dry_run else "dropped"
        return (
            f"{verb} {len(p.days)} days of the event log ({days}, {rows}), every day wholly "
            f"before {horizon}; the horizon's own day stays until it is wholly past"
        )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "prune",
        _request,
        _prune,
        help="drop the event log's days recorded before a horizon",
        description="Drop every day of the event log (a partition of user_events) recorded "
        "wholly before the horizon (never the database's today), in one transaction, and "
        "record it. Replicas pruning on LOG_RETENTION skip their round while it runs. "
        "After a prune that dropped days, rebuild refuses "
        "(the log no longer holds all of history). See docs/privacy.md.",
    )
    parser.epilog = (
        "Exit codes: 0 pruned (or nothing to prune, or reported on a dry run); 1 PostgreSQL "
        "answered an error; 2 could not run (a bad or future horizon, PostgreSQL "
        "unreachable, a schema behind on a dry run)."
    )
    horizon = parser.add_mutually_exclusive_group(required=True)
    horizon.add_argument(
        "--before", metavar="TIMESTAMP", help="an RFC 3339 time, such as 2026-11-01T00:00:00Z"
    )
    horizon.add_argument(
        "--older-than", metavar="DURATION", help="a duration before now, such as 30d or 12h"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say which days would go; drop nothing and apply no migration. Default: off",
    )


def _request(args: argparse.Namespace) -> PruneRequest:
    return parse_request(args.before, args.older_than, args.dry_run, datetime.now(UTC))


async def _prune(settings: Settings, request: PruneRequest) -> PruneReport:
    async with (
        tool_store(settings, migrate=not request.dry_run) as store,
        store.pool.acquire() as conn,
    ):
        pruned = await prune(conn, request.horizon, "tool", dry_run=request.dry_run, wait=True)
    assert pruned is not None  # waiting, the lock is always had
    return PruneReport(request.dry_run, pruned)
