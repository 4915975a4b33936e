"""The projection: what an event does to a user (last writer wins per field, tombstones). Pure.

A user is three last-writer-wins registers: ``status``, ``email`` and ``name``. Each
remembers the version of the event that last wrote it, and an event writes a register
only when it is newer than that version. An event that writes no register is
``stale``. Because each register keeps the maximum version it has seen, the final
state does not depend on the order in which events arrive: replaying any range, any
number of times, converges. A delete is a tombstone: it erases email and name, and an
older event never brings the user back.

The invariants every applier keeps, which the rest of the consumer relies on (a new
event type's applier keeps them too; tests/unit/test_convergence.py checks them):

- each register's version is the maximum of the versions that wrote it: an applier
  writes a register only with a version newer than the register's;
- an event is STALE only when it is not newer than ``latest_version`` (the newest of the
  registers): ``core/dedupe.possibly_logged`` looks up in the event log only the events
  not newer than their user's latest version, so a rule that logs a newer event as stale
  would let its redelivery be applied twice;
- ``latest_version`` reads every ``*_version`` field of ``UserState``: a new register is
  counted by declaring it, not by remembering this property.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, NamedTuple, get_args, overload

from user_events_schemas import UserCreated, UserDeleted, UserUpdated

from consumer.core.decode import AnyUserEvent
from consumer.core.records import FieldError, KafkaRecord, Outcome, Reason, Rejection

Status = Literal["active", "deleted"]
EventKey = tuple[str, str]


class Version(NamedTuple):
    """Where an event stands in its user's history."""

    sequence: int | None
    time: datetime
    source: str
    event_id: str

    @classmethod
    def of(cls, event: AnyUserEvent) -> Version:
        return cls(event.sequence, event.time, event.source, event.id)

    def is_newer_than(self, other: Version) -> bool:
        """By ``sequence`` when both have one, else by ``time``; ties by the event key."""
        if self.sequence is not None and other.sequence is not None:
            if self.sequence != other.sequence:
                return self.sequence > other.sequence
        elif self.time != other.time:
            return self.time > other.time
        return (self.source, self.event_id) > (other.source, other.event_id)

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> Version:
        return cls(raw[0], datetime.fromisoformat(raw[1]), raw[2], raw[3])


def _newest(a: Version, b: Version) -> Version:
    return a if a.is_newer_than(b) else b


class UserState(NamedTuple):
    """One row of ``users``, with the version of each register."""

    user_id: str
    status: Status
    email: str | None
    name: str | None
    created_at: datetime
    updated_at: datetime
    status_version: Version
    email_version: Version
    name_version: Version

    @property
    def latest_version(self) -> Version:
        newest: Version
        newest, *others = _register_versions(self)
        for version in others:
            if version.is_newer_than(newest):
                newest = version
        return newest


# Every register's version field, from the declaration: a new register is counted.
_register_versions = attrgetter(*(name for name in UserState._fields if name.endswith("_version")))


def apply_event(
    state: UserState | None, event: AnyUserEvent
) -> tuple[UserState | None, Outcome | Rejection]:
    """The user's state after ``event``, and whether the event applied, was stale or is poison."""
    # By the discriminator, not isinstance: the models' metaclass makes that an ABC check.
    applier: Any = _APPLIERS[event.type]
    return applier(state, event, Version.of(event))  # type: ignore[no-any-return]


# The three appliers build the next state in one constructor call, by name, rather than
# through ``_replace(**changes)``: they run once per event, and this is the hot path.


def _apply_created(
    state: UserState | None, event: UserCreated, version: Version
) -> tuple[UserState | None, Outcome | Rejection]:
    email, name, time = event.data.email, event.data.name, event.time
    if state is None:
        return UserState(
            user_id=event.subject,
            status="active",
            email=email,
            name=name,
            created_at=time,
            updated_at=time,
            status_version=version,
            email_version=version,
            name_version=version,
        ), Outcome.APPLIED
    status_wins = version.is_newer_than(state.status_version)
    email_wins = version.is_newer_than(state.email_version)
    name_wins = version.is_newer_than(state.name_version)
    if not (status_wins or email_wins or name_wins):
        return state, Outcome.STALE
    return UserState(
        user_id=state.user_id,
        status="active" if status_wins else state.status,
        email=email if email_wins else state.email,
        name=name if name_wins else state.name,
        created_at=time if status_wins else state.created_at,
        updated_at=max(state.updated_at, time),
        status_version=version if status_wins else state.status_version,
        email_version=version if email_wins else state.email_version,
        name_version=version if name_wins else state.name_version,
    ), Outcome.APPLIED


# The event type's name, from its model (the contract): these messages follow a rename.
_UPDATED = str(get_args(UserUpdated.model_fields["type"].annotation)[0])
_NEVER_CREATED = Rejection(
    Reason.UNKNOWN_USER,
    f"{_UPDATED} for a user that was never created",
    errors=(FieldError("subject", "user_not_created"),),
)
# Not parked: a tombstone wins, and a deleted user's personal values are not kept waiting
# (docs/parking.md).
_DELETED = Rejection(
    Reason.USER_DELETED,
    f"{_UPDATED} for a deleted user",
    errors=(FieldError("subject", "user_deleted"),),
)


def _apply_updated(
    state: UserState | None, event: UserUpdated, version: Version
) -> tuple[UserState | None, Outcome | Rejection]:
    if state is None:
        return state, _NEVER_CREATED
    if state.status == "deleted":
        if version.is_newer_than(state.status_version):
            return state, _DELETED
        return state, Outcome.STALE
    email, name = event.data.email, event.data.name
    email_wins = email is not None and version.is_newer_than(state.email_version)
    name_wins = name is not None and version.is_newer_than(state.name_version)
    if not (email_wins or name_wins):
        return state, Outcome.STALE
    return UserState(
        user_id=state.user_id,
        status=state.status,
        email=email if email_wins else state.email,
        name=name if name_wins else state.name,
        created_at=state.created_at,
        updated_at=max(state.updated_at, event.time),
        status_version=state.status_version,
        email_version=version if email_wins else state.email_version,
        name_version=version if name_wins else state.name_version,
    ), Outcome.APPLIED


def _apply_deleted(
    state: UserState | None, event: UserDeleted, version: Version
) -> tuple[UserState | None, Outcome | Rejection]:
    time = event.time
    if state is None:
        # A tombstone, so that an older user.created arriving later cannot create the user.
        return UserState(
            user_id=event.subject,
            status="deleted",
            email=None,
            name=None,
            created_at=time,
            updated_at=time,
            status_version=version,
            email_version=version,
            name_version=version,
        ), Outcome.APPLIED
    if not version.is_newer_than(state.status_version):
        return state, Outcome.STALE
    return UserState(
        user_id=state.user_id,
        status="deleted",
        email=None,
        name=None,
        created_at=state.created_at,
        updated_at=max(state.updated_at, time),
        status_version=version,
        email_version=_newest(version, state.email_version),
        name_version=_newest(version, state.name_version),
    ), Outcome.APPLIED


# One applier per event type of the contract; tests/unit/test_projection.py checks that none
# is missing, so a new type fails there rather than falling into another type's rule.
_APPLIERS = {
    "user.created": _apply_created,
    "user.updated": _apply_updated,
    "user.deleted": _apply_deleted,
}


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
