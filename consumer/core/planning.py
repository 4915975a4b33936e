"""A batch's plan from one read of the database. Pure.

The store reads, under the batch's user locks, everything the plan needs (a
``Snapshot``); ``plan_read`` decides every event from it; the store then writes what the
plan says. The one question the plan itself can raise, whether a rejected event's key
that was not looked up is logged after all, is ``unchecked_keys``'.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from consumer.core.batchplan import BatchPlan, Planner
from consumer.core.decode import AnyUserEvent
from consumer.core.dedupe import rejected_unchecked
from consumer.core.projection import EventKey, UserState
from consumer.core.records import KafkaRecord


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a batch's transaction read under its users' locks."""

    # The batch's users that have a row, and each one's key (None once deleted).
    states: Mapping[str, UserState]
    data_keys: Mapping[str, bytes | None]
    # The emails the batch may claim (``claimed_emails``), and the active user holding
    # each of those that one holds (lower-cased).
    emails: Sequence[str]
    email_owners: Mapping[str, str]
    # The event keys looked up in the log, and those of them it holds.
    looked_up: Collection[EventKey]
    logged: Collection[EventKey]
    # Whether anything was parked at all: if not, nothing waits for these users.
    any_parked: bool

    def knowing_logged(self, looked_up: Iterable[EventKey], logged: Iterable[EventKey]) -> Snapshot:
        """This snapshot, with more keys looked up."""
        return replace(
            self, looked_up={*self.looked_up, *looked_up}, logged={*self.logged, *logged}
        )


def plan_read(
    accepted: Iterable[tuple[KafkaRecord, AnyUserEvent]], snapshot: Snapshot
) -> tuple[BatchPlan, Planner]:
    """Decide every event of a batch, in order, against what was read; the planner goes
    on deciding what the batch heals (``consumer.edges.store_healing``)."""
    planner = Planner(snapshot.states, snapshot.logged, snapshot.email_owners, snapshot.emails)
    return BatchPlan(planner.decide(accepted), planner.users), planner


def unchecked_keys(plan: BatchPlan, snapshot: Snapshot) -> list[EventKey]:
    """Keys of the events ``plan`` rejects that were not looked up in the log: if one is
    logged, the batch is planned again (see ``rejected_unchecked``)."""
    return rejected_unchecked(plan, snapshot.looked_up)
