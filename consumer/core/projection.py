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

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, NamedTuple, get_args

from user_events_schemas import UserCreated, UserDeleted, UserUpdated

from consumer.core.decode import AnyUserEvent
from consumer.core.records import FieldError, Outcome, Reason, Rejection

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
            # Registers written by one event share its Version: no comparison then.
            if version is not newest and version.is_newer_than(newest):
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


# The three appliers build the next state in one constructor call, positionally, in
# ``UserState``'s field order (the comments name the fields that do not name themselves):
# they run once per event, and a call by name cost 0.3 us more (measured), as
# ``_replace(**changes)`` costs more still. A field added to ``UserState`` without a
# default makes every call here fail until it is given; fields reordered would pass
# values to the wrong ones, which tests/unit/test_projection.py's field-by-field
# assertions and the users row round trip (test_user_rows.py) catch.


def _apply_created(
    state: UserState | None, event: UserCreated, version: Version
) -> tuple[UserState | None, Outcome | Rejection]:
    email, name, time = event.data.email, event.data.name, event.time
    if state is None:
        return UserState(
            event.subject,
            "active",
            email,
            name,
            time,  # created_at
            time,  # updated_at
            version,  # status_version
            version,  # email_version
            version,  # name_version
        ), Outcome.APPLIED
    status_wins = version.is_newer_than(state.status_version)
    email_wins = version.is_newer_than(state.email_version)
    name_wins = version.is_newer_than(state.name_version)
    if not (status_wins or email_wins or name_wins):
        return state, Outcome.STALE
    return UserState(
        state.user_id,
        "active" if status_wins else state.status,
        email if email_wins else state.email,
        name if name_wins else state.name,
        time if status_wins else state.created_at,
        max(state.updated_at, time),
        version if status_wins else state.status_version,
        version if email_wins else state.email_version,
        version if name_wins else state.name_version,
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
        state.user_id,
        state.status,
        email if email_wins else state.email,
        name if name_wins else state.name,
        state.created_at,
        max(state.updated_at, event.time),
        state.status_version,
        version if email_wins else state.email_version,
        version if name_wins else state.name_version,
    ), Outcome.APPLIED


def _apply_deleted(
    state: UserState | None, event: UserDeleted, version: Version
) -> tuple[UserState | None, Outcome | Rejection]:
    time = event.time
    if state is None:
        # A tombstone, so that an older user.created arriving later cannot create the user.
        return UserState(
            event.subject,
            "deleted",
            None,  # email
            None,  # name
            time,  # created_at
            time,  # updated_at
            version,  # status_version
            version,  # email_version
            version,  # name_version
        ), Outcome.APPLIED
    if not version.is_newer_than(state.status_version):
        return state, Outcome.STALE
    return UserState(
        state.user_id,
        "deleted",
        None,  # email
        None,  # name
        state.created_at,
        max(state.updated_at, time),
        version,  # status_version
        _newest(version, state.email_version),
        _newest(version, state.name_version),
    ), Outcome.APPLIED


# One applier per event type of the contract; tests/unit/test_projection.py checks that none
# is missing, so a new type fails there rather than falling into another type's rule.
_APPLIERS = {
    "user.created": _apply_created,
    "user.updated": _apply_updated,
    "user.deleted": _apply_deleted,
}
