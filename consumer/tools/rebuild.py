"""``user-events-consumer rebuild``: recompute ``users`` from the ``user_events`` log.

Without Kafka: the log holds every event that was applied or found stale, with its
payload, in the order it was written. Folding it again through the projection
(``plan_batch``, or a changed rule passed in) gives the users table that rule implies,
so a changed projection rule can be applied to history. The whole rebuild is one
transaction: the log is locked against appends (SHARE), users against writers
(EXCLUSIVE: readers go on), the table is rewritten, and readers see the old rows or
the new ones, never a mix. The live consumer waits for the lock, then goes on.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer import collector
from consumer.core.batchplan import (
    BatchPlan,
    Planner,
    Verdict,
    claimed_emails,
    move_email,
    plan_batch,
)
from consumer.core.decode import AnyUserEvent
from consumer.core.erasure import decode_logged
from consumer.core.projection import EventKey, UserState, Version
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.sealing import new_key
from consumer.edges.store import Store
from consumer.edges.store_rebuild import LoggedRow
from consumer.settings import Settings
from consumer.tools.clients import tool_store
from consumer.tools.errors import ToolError
from consumer.tools.runner import add_tool

log = logging.getLogger(__name__)

Rule = Callable[
    [
        Iterable[tuple[KafkaRecord, AnyUserEvent]],
        Mapping[str, UserState],
        Iterable[EventKey],
        Mapping[str, str],
    ],
    BatchPlan,
]


# --- pure ---------------------------------------------------------------------


@dataclass(slots=True)
class Projector:
    """Folds the event log, chunk by chunk, into user states with a projection rule."""

    rule: Rule = plan_batch
    keys: Mapping[str, bytes | None] = field(default_factory=dict)  # what opens the log
    users: dict[str, UserState] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # lower(email) -> active user
    outcomes: Counter[str] = field(default_factory=Counter)
    read: int = 0

    def feed(self, rows: Sequence[LoggedRow]) -> None:
        """Fold ``rows``: a batch's own events through the rule, one by one; the parked
        events a transaction healed (read right after its own) as it decided them, each
        user's together (``consumer.core.parking``)."""
        accepted: list[tuple[KafkaRecord, AnyUserEvent]] = []
        healed: list[tuple[KafkaRecord, AnyUserEvent]] = []
        healed_at = None
        for record, sealed, was_parked, at in rows:
            self.read += 1
            if healed and (not was_parked or at != healed_at):  # that transaction's end
                self._fold(accepted)
                self._fold_healed(healed)
                accepted, healed = [], []
            event = decode_logged(record, sealed, self.keys)
            if isinstance(event, Rejection):
                self.outcomes[str(event.reason)] += 1
            elif was_parked:
                healed.append((record, event))
                healed_at = at
            else:
                accepted.append((record, event))
        self._fold(accepted)
        self._fold_healed(healed)

    def _count(self, verdicts: Iterable[Verdict]) -> None:
        for verdict in verdicts:
            result = verdict.result
            self.outcomes[str(result.reason if isinstance(result, Rejection) else result)] += 1

    def _fold(self, accepted: list[tuple[KafkaRecord, AnyUserEvent]]) -> None:
        subjects = {event.subject for _, event in accepted}
        plan = self.rule(
            accepted,
            {u: self.users[u] for u in subjects if u in self.users},
            (),  # the log's keys are unique within a day, and across days but for the cases
            # docs/privacy.md lists: nothing in it is a duplicate of another row
            {m: self.owners[m] for m in claimed_emails(accepted) if m in self.owners},
        )
        self._count(plan.verdicts)
        for user_id, after in plan.users.items():
            move_email(self.owners, self.users.get(user_id), after)
            self.users[user_id] = after

    def _fold_healed(self, healed: list[tuple[KafkaRecord, AnyUserEvent]]) -> None:
        """Each user's healed events together, in version order, as healing decided them.
        A user whose email is still another's waits for the others (the batch healed it
        in a later round, once they freed it); if none can go first, they are decided as
        they are, and counted for what they are."""
        if not healed:
            return
        groups: dict[str, list[tuple[KafkaRecord, AnyUserEvent]]] = {}
        for entry in sorted(healed, key=lambda e: Version.of(e[1])):
            groups.setdefault(entry[1].subject, []).append(entry)
        # ``owners`` holds every active user's email: one it lacks is free.
        planner = Planner(self.users, (), self.owners, claimed_emails(healed))
        pending = sorted(groups)
        while pending:
            decided = {u: planner.decide_group(groups[u], all_or_nothing=True) for u in pending}
            deferred = [u for u, verdicts in decided.items() if verdicts is None]
            if len(deferred) == len(pending):
                decided = {u: planner.decide_group(groups[u]) for u in deferred}
                deferred = []
            for verdicts in decided.values():
                self._count(verdicts or ())
            pending = deferred
        self.users.update(planner.users)
        self.owners = planner.owners


def kept_keys(
    users: Mapping[str, UserState], keys: Mapping[str, bytes | None]
) -> dict[str, bytes | None]:
    """The key of each rebuilt user: its own for an active user (a new one if it had
    none), none for a deleted one."""
    return {
        user_id: (keys.get(user_id) or new_key()) if user.status == "active" else None
        for user_id, user in users.items()
    }


def row_of(user: UserState) -> tuple[Any, ...]:
    """Every field but the id, so that a field added to ``UserState`` is compared too."""
    return tuple(user)[1:]


def diff_users(
    before: Mapping[str, UserState], after: Mapping[str, UserState]
) -> dict[str, list[str]]:
    """User ids added, removed and changed by the rebuild."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(
            u for u in set(before) & set(after) if row_of(before[u]) != row_of(after[u])
        ),
    }


@dataclass(slots=True)
class RebuildReport:
    dry_run: bool
    events: int
    users_before: int
    users_after: int
    diff: dict[str, list[str]]
    outcomes: dict[str, int]
    parked: int = 0

    @property
    def complete(self) -> bool:
        """Always: what the fold rejects (a conflict) is an outcome it counts."""
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "events": self.events,
            "users_before": self.users_before,
            "users_after": self.users_after,
            "added": len(self.diff["added"]),
            "removed": len(self.diff["removed"]),
            "changed": len(self.diff["changed"]),
            "outcomes": self.outcomes,
            "parked_kept": self.parked,
        }

    def render(self) -> str:
        d = self.to_json()
        verb = "would rebuild" if self.dry_run else "rebuilt"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        text = (
            f"{verb} users from {d['events']} logged events ({outcomes or 'none'})\n"
            f"users: {d['users_before']} before, {d['users_after']} after; "
            f"added {d['added']}, removed {d['removed']}, changed {d['changed']}"
        )
        if self.parked:
            # Not in the log: the rebuild leaves them parked, and the live service's sweep
            # heals those whose wait the rebuilt table ends.
            text += f"\nparked events: {self.parked} kept, still waiting (docs/parking.md)"
        return text


# --- I/O ----------------------------------------------------------------------


async def rebuild(
    store: Store, *, dry_run: bool = False, rule: Rule = plan_batch, chunk_size: int = 5000
) -> RebuildReport:
    """Recompute ``users`` from the log in one transaction (rolled back on a dry run)."""
    projector = Projector(rule)
    # The fold keeps a state per user, growing with the log, and the report compares them
    # all with the table's: no collector's rescans of them.
    with collector.paused():
        async with store.rewriting_users(commit=not dry_run) as table:
            if (horizon := await table.pruned_through()) is not None:
                raise ToolError(
                    f"the event log was pruned (rows recorded before {horizon:%Y-%m-%d} are "
                    "gone): users rebuilt from it would lose every user seen only then, so "
                    "rebuild refuses; the users table is unchanged"
                )
            before, keys = await table.users()
            projector.keys = keys
            async for chunk in table.logged_events(chunk_size):
                projector.feed(chunk)
            if not dry_run:
                users = projector.users
                await table.replace_users(users.values(), kept_keys(users, keys))
            parked = await table.parked()
        report = RebuildReport(
            dry_run,
            projector.read,
            len(before),
            len(projector.users),
            diff_users(before, projector.users),
            dict(projector.outcomes),
            parked,
        )
    log.info("rebuild finished", extra=report.to_json())
    return report


# --- the command ----------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_tool(
        commands,
        "rebuild",
        _dry_run,
        _rebuild,
        help="recompute users from the event log",
        description="Recompute the users table from user_events in one transaction, without "
        "Kafka, so that a changed projection rule applies to history. Live writers wait "
        "for it; readers see the old table until it commits.",
    )
    parser.epilog = (
        "Exit codes: 0 rebuilt (or reported); 1 PostgreSQL answered an error; 2 could not "
        "run (PostgreSQL unreachable, a schema behind on a dry run, a pruned log). See "
        "docs/replay.md."
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would change; write nothing and apply no migration (exit 2 if "
        "the schema is behind). Default: off",
    )


def _dry_run(args: argparse.Namespace) -> bool:
    return bool(args.dry_run)


async def _rebuild(settings: Settings, dry_run: bool) -> RebuildReport:
    async with tool_store(settings, migrate=not dry_run) as store:
        return await rebuild(store, dry_run=dry_run)


__all__ = ["Outcome", "Projector", "RebuildReport", "add_parser", "rebuild"]
