"""``user-events-consumer erase``: erase one user's personal data on a request from outside
Kafka (a support ticket, a regulator), as a ``user.deleted`` would.

The user becomes a tombstone newer than anything it holds, so that no event published
before the request brings it back; its log rows lose their email and name; ``erasures``
records the request with its reason. A rerun finds nothing left and changes nothing.
Nothing printed holds personal data: counts, ids and times only.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from consumer.edges.store_erasure import RequestErasure, erase_on_request
from consumer.settings import Settings
from consumer.tools.clients import tool_store
from consumer.tools.display import utc_text
from consumer.tools.errors import BadArgument
from consumer.tools.runner import add_tool

# A reason is kept for ever, for the auditor: it must not be personal data itself.
_EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+")
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class EraseRequest:
    user_id: str
    reason: str
    dry_run: bool


def parse_request(user_id: str, reason: str, dry_run: bool) -> EraseRequest:
    """Check the arguments: a user id, and a reason that names the request without
    holding personal data."""
    if not user_id.strip():
        raise BadArgument("--user-id is empty")
    reason = reason.strip()
    if not reason:
        raise BadArgument("--reason is empty: say why, such as a ticket number")
    if len(reason) > _MAX_REASON:
        raise BadArgument(f"--reason is longer than {_MAX_REASON} characters")
    if _EMAIL_LIKE.search(reason):
        raise BadArgument(
            "--reason holds what looks like an email address: it is kept for ever, so it "
            "must not hold personal data (give a ticket number instead)"
        )
    return EraseRequest(user_id, reason, dry_run)


@dataclass(frozen=True, slots=True)
class EraseReport:
    dry_run: bool
    erasure: RequestErasure

    @property
    def complete(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        e = self.erasure
        previous = e.previous
        return {
            "dry_run": self.dry_run,
            "user_id": e.user_id,
            "erased": e.erased_at is not None,
            "erased_at": None if e.erased_at is None else utc_text(e.erased_at, "microseconds"),
            "already_erased": not e.needed,
            "users_row": e.users_row,
            "log_rows": e.log_rows,
            "parked_events": e.parked,
            "tombstoned": e.tombstoned,
            "previous_erasure": None
            if previous is None
            else {"at": utc_text(previous.erased_at, "microseconds"), "by": previous.trigger},
        }

    def render(self) -> str:
        e = self.erasure
        if not e.needed:
            before = (
                f" (last erased {utc_text(e.previous.erased_at)}, by {e.previous.trigger})"
                if e.previous is not None
                else ""
            )
            return f"user {e.user_id}: already erased, nothing to do{before}"
        parts = [
            f"{e.log_rows} log rows",
            "the users row" if e.users_row else "no users row data",
            "tombstone written" if e.tombstoned else "tombstone renewed",
        ]
        if e.parked:
            parts.insert(1, f"{e.parked} parked events")
        if self.dry_run:
            parts[-1] = "would write a tombstone" if e.tombstoned else "would renew the tombstone"
            return f"user {e.user_id}: would erase {', '.join(parts)}"
        assert e.erased_at is not None
        return f"user {e.user_id}: erased {', '.join(parts)}; recorded at {utc_text(e.erased_at)}"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "erase",
        _request,
        _erase,
        help="erase one user's personal data on request, as a user.deleted would",
        description="Erase a user's email and name from every table of the service, and "
        "tombstone the user so that no event published before the request brings them "
        "back, in one transaction; the erasure is recorded (user id, when, the reason), "
        "without personal data. Idempotent. See docs/privacy.md.",
    )
    parser.epilog = (
        "Exit codes: 0 erased (or already erased, or reported on a dry run); 1 PostgreSQL "
        "answered an error; 2 could not run (a bad argument, PostgreSQL unreachable, a "
        "schema behind on a dry run)."
    )
    parser.add_argument("--user-id", required=True, metavar="ID", help="the user to erase")
    parser.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why, for the record, such as a ticket number; kept for ever, so no personal "
        "data (one that looks like an email address is refused)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be erased; write nothing and apply no migration. Default: off",
    )


def _request(args: argparse.Namespace) -> EraseRequest:
    return parse_request(args.user_id, args.reason, args.dry_run)


async def _erase(settings: Settings, request: EraseRequest) -> EraseReport:
    async with tool_store(settings, migrate=not request.dry_run) as store:
        erasure = await erase_on_request(
            store.pool, request.user_id, request.reason, dry_run=request.dry_run
        )
    return EraseReport(request.dry_run, erasure)
