"""Ordering decisions: dedupe, last-writer-wins per field, tombstones, conflicts. Pure."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from user_events_schemas import UserCreated, UserDeleted, UserUpdated

from consumer.core.batchplan import plan_batch
from consumer.core.decode import AnyUserEvent
from consumer.core.projection import UserState, Version, apply_event
from consumer.core.records import KafkaRecord, Outcome, Reason, Rejection

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(
    kind: str, user: str, seq: int | None, secs: int = 0, event_id: str | None = None, **data: str
) -> AnyUserEvent:
    model = {"user.created": UserCreated, "user.updated": UserUpdated, "user.deleted": UserDeleted}[
        kind
    ]
    payload: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id or f"{kind}-{user}-{seq}-{secs}",
        "source": "/t",
        "type": kind,
        "subject": user,
        "time": T0 + timedelta(seconds=secs),
        "sequence": seq,
    }
    if kind == "user.created":
        payload["data"] = {
            "email": data.get("email", f"{user}@example.com"),
            "name": data.get("name", user),
        }
    elif kind == "user.updated":
        payload["data"] = data
    return model.model_validate(payload)


def rec(offset: int = 0) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, 0, None, b"{}", ())


def fold(events: list[AnyUserEvent]) -> UserState | None:
    state: UserState | None = None
    for event in events:
        state, _ = apply_event(state, event)
    return state


def test_sequence_decides_when_both_sides_have_one_and_time_otherwise() -> None:
    early_time_high_seq = Version(5, T0, "/a", "x")
    late_time_low_seq = Version(4, T0 + timedelta(hours=1), "/a", "y")
    assert early_time_high_seq.is_newer_than(late_time_low_seq)
    assert Version(None, T0 + timedelta(hours=1), "/a", "y").is_newer_than(early_time_high_seq)


def test_ties_are_broken_by_the_event_key() -> None:
    a, b = Version(1, T0, "/a", "1"), Version(1, T0, "/a", "2")
    assert b.is_newer_than(a) and not a.is_newer_than(b) and not a.is_newer_than(a)


def test_an_older_update_is_stale_and_changes_nothing() -> None:
    state = fold([ev("user.created", "u", 1), ev("user.updated", "u", 3, name="new")])
    after, outcome = apply_event(state, ev("user.updated", "u", 2, name="old"))
    assert outcome is Outcome.STALE and after == state and after is not None and after.name == "new"


def test_an_older_update_of_another_field_still_applies_to_that_field() -> None:
    state = fold([ev("user.created", "u", 1), ev("user.updated", "u", 3, name="new")])
    after, outcome = apply_event(state, ev("user.updated", "u", 2, email="older@example.com"))
    assert outcome is Outcome.APPLIED and after is not None
    assert (after.name, after.email) == ("new", "older@example.com")


def test_a_delete_is_a_tombstone_an_older_create_cannot_undo() -> None:
    state = fold([ev("user.deleted", "u", 5)])
    assert state is not None and state.status == "deleted"
    after, outcome = apply_event(state, ev("user.created", "u", 1))
    assert outcome is Outcome.STALE and after is not None and after.status == "deleted"
    assert after.email is None


def test_a_newer_create_brings_a_deleted_user_back() -> None:
    state = fold(
        [
            ev("user.created", "u", 1),
            ev("user.deleted", "u", 2),
            ev("user.created", "u", 3, name="again"),
        ]
    )
    assert state is not None and (state.status, state.name) == ("active", "again")


def test_an_update_for_an_unknown_or_deleted_user_is_poison() -> None:
    _, verdict = apply_event(None, ev("user.updated", "u", 1, name="x"))
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNKNOWN_USER
    state = fold([ev("user.created", "u", 1), ev("user.deleted", "u", 2)])
    _, verdict = apply_event(state, ev("user.updated", "u", 3, name="x"))
    # Its own reason: it cannot heal (the tombstone wins), so it is never parked.
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.USER_DELETED
    _, verdict = apply_event(state, ev("user.updated", "u", 1, name="x"))
    assert verdict is Outcome.STALE


def test_every_arrival_order_of_a_history_after_its_create_converges() -> None:
    # An update arriving before its user's create is poison (unknown_user) until redriven,
    # so the create comes first; every order of what follows ends in the same state.
    create = ev("user.created", "u", 1)
    history = [
        ev("user.updated", "u", 2, name="two"),
        ev("user.updated", "u", 3, email="three@example.com"),
        ev("user.updated", "u", 4, name="four"),
        ev("user.updated", "u", 5, email="five@example.com"),
    ]
    expected = fold([create, *history])
    for order in itertools.permutations(history):
        state = fold([create, *order])
        assert state is not None and expected is not None
        assert (state.status, state.email, state.name) == (
            expected.status,
            expected.email,
            expected.name,
        )


def test_plan_marks_duplicates_within_a_batch_and_against_the_log() -> None:
    create = ev("user.created", "u", 1)
    logged = ev("user.updated", "u", 2, name="x")
    plan = plan_batch(
        [(rec(0), create), (rec(1), create), (rec(2), logged)],
        states={},
        logged_keys=[(logged.source, logged.id)],
        email_owners={},
    )
    assert [v.result for v in plan.verdicts] == [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
    ]
    assert len(plan.logged) == 1


def test_plan_rejects_an_email_held_by_another_active_user_case_insensitively() -> None:
    plan = plan_batch(
        [
            (rec(0), ev("user.created", "a", 1, email="x@example.com")),
            (rec(1), ev("user.created", "b", 1, email="X@Example.com")),
            (rec(2), ev("user.deleted", "a", 2)),
            (rec(3), ev("user.created", "c", 1, email="x@example.com")),
        ],
        states={},
        logged_keys=[],
        email_owners={},
    )
    results = [v.result for v in plan.verdicts]
    assert results[0] is Outcome.APPLIED
    assert isinstance(results[1], Rejection) and results[1].reason is Reason.CONFLICT
    assert results[2] is Outcome.APPLIED and results[3] is Outcome.APPLIED
    assert set(plan.users) == {"a", "c"}


def test_plan_respects_owners_read_from_the_database() -> None:
    plan = plan_batch(
        [(rec(0), ev("user.created", "b", 1, email="held@example.com"))],
        states={},
        logged_keys=[],
        email_owners={"held@example.com": "a"},
    )
    assert isinstance(plan.verdicts[0].result, Rejection)
    assert plan.users == {} and plan.logged == []


def test_every_event_type_of_the_contract_has_its_own_applier() -> None:
    """A new type in the contract fails here until the projection says what it does."""
    from user_events_schemas.models import EVENT_TYPES

    from consumer.core.projection import _APPLIERS

    assert set(_APPLIERS) == set(EVENT_TYPES)
