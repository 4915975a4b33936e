"""A batch's decisions: each accepted event's verdict in version order, through the
projection (``consumer.core.projection``), with email ownership across the batch's users.
Pure; ``consumer.core.planning`` runs it on what the store read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, overload

from consumer.core.decode import AnyUserEvent
from consumer.core.projection import EventKey, UserState, Version, apply_event
from consumer.core.records import FieldError, KafkaRecord, Outcome, Reason, Rejection


class Verdict(NamedTuple):
    """What became of one accepted record in a batch."""

    record: KafkaRecord
    event: AnyUserEvent
    result: Outcome | Rejection


@dataclass(slots=True)
class BatchPlan:
    """The writes a batch needs: event-log rows, final user rows, and each record's verdict."""

    verdicts: list[Verdict] = field(default_factory=list)
    users: dict[str, UserState] = field(default_factory=dict)
    # Parking (``consumer.core.parking``), all empty without it: the events this batch
    # parked (new ones only), the parked events it healed with when each was parked and
    # why, and the parked events it dead-letters now (a reason that cannot heal).
    parked: list[tuple[Verdict, Rejection]] = field(default_factory=list)
    healed: list[tuple[Verdict, datetime, Rejection]] = field(default_factory=list)
    released: list[tuple[KafkaRecord, Rejection]] = field(default_factory=list)

    def merge(self, other: BatchPlan) -> None:
        self.verdicts.extend(other.verdicts)
        self.users.update(other.users)
        self.parked.extend(other.parked)
        self.healed.extend(other.healed)
        self.released.extend(other.released)

    @property
    def logged(self) -> list[Verdict]:
        """Verdicts that go to the event log (applied or stale)."""
        return [v for v in self.verdicts if v.result in (Outcome.APPLIED, Outcome.STALE)]

    @property
    def rejected(self) -> list[tuple[KafkaRecord, Rejection]]:
        return [(v.record, v.result) for v in self.verdicts if isinstance(v.result, Rejection)]


def plan_batch(
    accepted: Iterable[tuple[KafkaRecord, AnyUserEvent]],
    states: Mapping[str, UserState],
    logged_keys: Iterable[EventKey],
    email_owners: Mapping[str, str],
) -> BatchPlan:
    """Decide every record of a batch, in order, against the state read under lock.

    ``logged_keys`` are the (source, id) keys already in the event log; ``email_owners``
    maps a lower-cased email to the active user holding it.
    """
    planner = Planner(states, logged_keys, email_owners)
    return BatchPlan(planner.decide(accepted), planner.users)


class Planner:
    """Decides events one after another against the state the ones before left: a batch's
    events, then the parked events they heal (``consumer.core.parking``), which may heal
    more in turn. ``users`` holds every user changed so far; ``freed`` the lower-cased
    emails their holders gave up."""

    def __init__(
        self,
        states: Mapping[str, UserState],
        logged_keys: Iterable[EventKey],
        email_owners: Mapping[str, str],
        looked_up: Iterable[str] = (),
    ) -> None:
        self.current = dict(states)
        self.owners = dict(email_owners)
        self.seen = set(logged_keys)
        self.users: dict[str, UserState] = {}
        self.freed: set[str] = set()
        # The emails whose holders were read (held or not): ``owners`` knows them.
        self._looked_up = set(email_owners).union(looked_up)

    def learn(
        self,
        states: Mapping[str, UserState],
        logged_keys: Iterable[EventKey],
        email_owners: Mapping[str, str],
        looked_up: Iterable[str],
    ) -> None:
        """Add what was read for more users and emails; what the planner already knows
        (its own decisions included) stays as it is."""
        for user_id, state in states.items():
            self.current.setdefault(user_id, state)
        self.seen.update(logged_keys)
        for email in looked_up:
            if not self.knows_email(email):
                self._looked_up.add(email)
                if email in email_owners:
                    self.owners[email] = email_owners[email]

    def knows_email(self, email: str) -> bool:
        """Whether the planner knows who holds ``email`` (read, claimed or freed since):
        the database does not, until the batch is written."""
        return email in self._looked_up or email in self.owners

    def _freed(self, email: str) -> None:
        self.freed.add(email)
        self._looked_up.add(email)  # held by no one now, whatever the database says

    def decide(self, accepted: Iterable[tuple[KafkaRecord, AnyUserEvent]]) -> list[Verdict]:
        current, owners, seen, users = self.current, self.owners, self.seen, self.users
        verdicts: list[Verdict] = []
        for record, event in accepted:
            key = (event.source, event.id)
            if key in seen:
                verdicts.append(Verdict(record, event, Outcome.DUPLICATE))
                continue
            before = current.get(event.subject)
            after, result = apply_event(before, event)
            if result is Outcome.APPLIED and after is not None:
                # Most events keep the user's email and status (a rename): whoever held the
                # email still does, so there is nothing to check or move.
                if before is None or after.email != before.email or after.status != before.status:
                    holder = anothers_email_holder(owners, after)
                    if holder is not None:
                        result = email_conflict(holder)
                    elif (freed := move_email(owners, before, after)) is not None:
                        self._freed(freed)
                if result is Outcome.APPLIED:
                    current[after.user_id] = after
                    users[after.user_id] = after
            if not isinstance(result, Rejection):
                seen.add(key)
            verdicts.append(Verdict(record, event, result))
        return verdicts

    @overload
    def decide_group(
        self, entries: Sequence[tuple[KafkaRecord, AnyUserEvent]]
    ) -> list[Verdict]: ...

    @overload
    def decide_group(
        self, entries: Sequence[tuple[KafkaRecord, AnyUserEvent]], all_or_nothing: bool
    ) -> list[Verdict] | None: ...

    def decide_group(
        self, entries: Sequence[tuple[KafkaRecord, AnyUserEvent]], all_or_nothing: bool = False
    ) -> list[Verdict] | None:
        """Decide the waiting events of one user together, in the order given (their
        versions'): folded onto the user's state, with its email checked once, on the
        state they end in. A user's own newer event may give up the email an older one
        claims (a create with an email someone took since, then a change of it): checked
        one by one, each would wait for the other. While the end state's email is
        another's, the event that claimed it waits (a conflict) and the rest are folded
        again without it; with ``all_or_nothing``, nothing is decided then (None)."""
        user_id = entries[0][1].subject
        before = self.current.get(user_id)
        waiting: dict[int, Rejection] = {}
        while True:
            state = before
            results: list[Outcome | Rejection] = []
            for i, (_, event) in enumerate(entries):
                if i in waiting:
                    results.append(waiting[i])
                elif (event.source, event.id) in self.seen:
                    results.append(Outcome.DUPLICATE)
                else:
                    after, result = apply_event(state, event)
                    if result is Outcome.APPLIED:
                        state = after
                    results.append(result)
            holder = None
            if state is not None and state is not before and _claims(before, state):
                holder = anothers_email_holder(self.owners, state)
            if holder is None:
                break
            if all_or_nothing:
                return None
            assert state is not None  # a holder is only looked for on a state
            waiting[_claimant(entries, results, state)] = email_conflict(holder)
        if state is not None and state is not before:
            self.current[user_id] = state
            self.users[user_id] = state
            if (freed := move_email(self.owners, before, state)) is not None:
                self._freed(freed)
        verdicts = []
        for (record, event), result in zip(entries, results, strict=True):
            if not isinstance(result, Rejection):
                self.seen.add((event.source, event.id))
            verdicts.append(Verdict(record, event, result))
        return verdicts


def _claims(before: UserState | None, after: UserState) -> bool:
    """Whether ``after`` may claim an email ``before`` did not hold (the check
    ``decide`` skips for most events: a rename keeps what the user held)."""
    return before is None or after.email != before.email or after.status != before.status


def _claimant(
    entries: Sequence[tuple[KafkaRecord, AnyUserEvent]],
    results: Sequence[Outcome | Rejection],
    state: UserState,
) -> int:
    """The applied entry that gave ``state`` its email (else its status: a re-creation);
    else the last applied one."""
    applied = [i for i, result in enumerate(results) if result is Outcome.APPLIED]
    for version in (state.email_version, state.status_version):
        for i in applied:
            if Version.of(entries[i][1]) == version:
                return i
    return applied[-1]


def claimed_emails(accepted: Iterable[tuple[KafkaRecord, AnyUserEvent]]) -> list[str]:
    """The lower-cased emails a batch may claim: whose holders ``plan_batch`` needs."""
    emails = {
        event.data.email.lower()
        for _, event in accepted
        if event.type != "user.deleted" and event.data is not None and event.data.email
    }
    return sorted(emails)


# Email ownership: an active user's email is its own. ``owners`` maps a lower-cased email
# to the active user holding it; the database enforces the same with a unique index.


def email_conflict(holder: str | None) -> Rejection:
    """The verdict on an event that would give its user an email ``holder`` holds (None: a
    holder the writer could not name)."""
    if holder is None:
        return Rejection(
            Reason.CONFLICT,
            "email belongs to another active user",
            errors=(FieldError("data.email", "conflict"),),
        )
    return Rejection(
        Reason.CONFLICT,
        f"email belongs to another active user: {holder}",
        errors=(FieldError("data.email", "conflict", holder),),
    )


def anothers_email_holder(owners: Mapping[str, str], user: UserState) -> str | None:
    """The other active user holding the email ``user``, active, would hold; else None."""
    holder = owners.get(user.email.lower()) if user.email else None
    if user.status == "active" and holder not in (None, user.user_id):
        return holder
    return None


def move_email(owners: dict[str, str], before: UserState | None, after: UserState) -> str | None:
    """Update ``owners`` for a user that changed from ``before`` to ``after``; returns the
    lower-cased email it gave up, if any (an active user's email is its own, whether or
    not ``owners`` was told)."""
    freed = None
    if before is not None and before.email:
        held = before.email.lower()
        if owners.get(held) == before.user_id:
            del owners[held]
            freed = held
        elif before.status == "active" and held not in owners:
            freed = held
    if after.status == "active" and after.email:
        owners[after.email.lower()] = after.user_id
        if freed == after.email.lower():
            freed = None
    return freed
