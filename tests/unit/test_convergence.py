"""Property: replaying any sub-ranges, any number of times, in any order, then the whole
history, converges to the fold of the deduplicated history in version order."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from user_events_schemas.models import UserCreated, UserDeleted, UserUpdated

from consumer.core.batchplan import plan_batch
from consumer.core.decode import AnyUserEvent
from consumer.core.dedupe import possibly_logged
from consumer.core.projection import UserState, Version, apply_event
from consumer.core.records import KafkaRecord, Outcome, Rejection

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Entry = tuple[KafkaRecord, AnyUserEvent]


def _event(
    kind: str, user: str, n: int, sequenced: bool, data: dict[str, Any] | None
) -> AnyUserEvent:
    common: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{user}-{n}",
        "source": "/prop",
        "subject": user,
        "time": T0 + timedelta(seconds=n),
        "type": kind,
    }
    if sequenced:
        common["sequence"] = n
    if kind == "user.created":
        return UserCreated.model_validate({**common, "data": data})
    if kind == "user.updated":
        return UserUpdated.model_validate({**common, "data": data})
    return UserDeleted.model_validate(common)


@st.composite
def user_history(draw: st.DrawFn, user: str) -> list[AnyUserEvent]:
    """One user's events in publishing order: a create, updates, perhaps a delete."""
    sequenced = draw(st.booleans())
    events = [
        _event(
            "user.created",
            user,
            1,
            sequenced,
            {"email": f"{user}.1@example.com", "name": f"{user} 1"},
        )
    ]
    for n in range(2, draw(st.integers(2, 6))):
        field = draw(st.sampled_from(["email", "name", "both"]))
        data = {}
        if field in ("email", "both"):
            data["email"] = f"{user}.{n}@example.com"  # emails never shared between users
        if field in ("name", "both"):
            data["name"] = f"{user} {n}"
        events.append(_event("user.updated", user, n, sequenced, data))
    if draw(st.booleans()):
        events.append(_event("user.deleted", user, len(events) + 1, sequenced, None))
    return events


@st.composite
def histories(draw: st.DrawFn) -> list[AnyUserEvent]:
    """Users' histories interleaved (each user's order kept, as one key keeps it in a
    partition), with some events published again later (duplicates)."""
    per_user = [draw(user_history(f"u{i}")) for i in range(draw(st.integers(1, 4)))]
    merged: list[AnyUserEvent] = []
    while any(per_user):
        i = draw(st.sampled_from([i for i, h in enumerate(per_user) if h]))
        merged.append(per_user[i].pop(0))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(merged) - 1))
        merged.insert(draw(st.integers(at + 1, len(merged))), merged[at])
    return merged


def reference(history: list[AnyUserEvent]) -> dict[str, tuple[Any, ...]]:
    """The pure model: dedupe by (source, id), sort by version, fold with the same rules."""
    unique = {(e.source, e.id): e for e in history}.values()

    def order(a: AnyUserEvent, b: AnyUserEvent) -> int:
        return 1 if Version.of(a).is_newer_than(Version.of(b)) else -1

    states: dict[str, UserState] = {}
    for event in sorted(unique, key=functools.cmp_to_key(order)):
        after, result = apply_event(states.get(event.subject), event)
        if not isinstance(result, Rejection) and after is not None:
            states[event.subject] = after
    return {u: (s.status, s.email, s.name) for u, s in states.items()}


class Projection:
    """The store's state: users, the logged keys, active emails; fed through plan_batch.

    Like the store, it looks up only the keys ``possibly_logged`` names, and checks that
    no logged key of the batch is left out of them (a miss would apply a duplicate)."""

    def __init__(self) -> None:
        self.users: dict[str, UserState] = {}
        self.logged: set[tuple[str, str]] = set()

    def apply(self, batch: list[Entry]) -> None:
        owners = {
            s.email.lower(): u for u, s in self.users.items() if s.status == "active" and s.email
        }
        maybe = {(e.source, e.id) for _, e in possibly_logged(batch, self.users)}
        logged_now = {(e.source, e.id) for _, e in batch} & self.logged
        assert logged_now <= maybe
        plan = plan_batch(batch, self.users, logged_now & maybe, owners)
        self.users.update(plan.users)
        self.logged |= {(v.event.source, v.event.id) for v in plan.logged}

    def state(self) -> dict[str, tuple[Any, ...]]:
        return {u: (s.status, s.email, s.name) for u, s in self.users.items()}


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_replays_in_any_order_converge_to_the_reference(data: st.DataObject) -> None:
    history = data.draw(histories())
    log = [(KafkaRecord("t", 0, i, 0, None, None, ()), e) for i, e in enumerate(history)]
    projection = Projection()
    for _ in range(data.draw(st.integers(0, 6))):
        start = data.draw(st.integers(0, len(log) - 1))
        end = data.draw(st.integers(start + 1, len(log)))
        size = data.draw(st.integers(1, 5))
        for at in range(start, end, size):
            projection.apply(log[at : min(at + size, end)])
    # The live consumer's single pass, in batches, comes last (or is interleaved above).
    size = data.draw(st.integers(1, len(log)))
    for at in range(0, len(log), size):
        projection.apply(log[at : at + size])
    assert projection.state() == reference(history)
    # And once converged, any further replay changes nothing.
    before = projection.state()
    projection.apply(log)
    assert projection.state() == before


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_appliers_keep_the_invariants_dedupe_relies_on(data: st.DataObject) -> None:
    """core/projection.py's invariants, event by event in any arrival order: no register's
    version goes back, a stale event is never newer than the user's latest version, and
    ``latest_version`` is the newest of every declared register."""
    events = data.draw(st.permutations(data.draw(user_history("u"))))
    registers = [name for name in UserState._fields if name.endswith("_version")]
    state: UserState | None = None
    for event in events:
        after, outcome = apply_event(state, event)
        if state is not None and after is not None:
            for register in registers:
                assert not getattr(state, register).is_newer_than(getattr(after, register))
            if outcome == Outcome.STALE:
                assert not Version.of(event).is_newer_than(state.latest_version)
        if after is not None:
            newest = after.latest_version
            assert all(not getattr(after, r).is_newer_than(newest) for r in registers)
            assert newest in [getattr(after, r) for r in registers]
        state = after
