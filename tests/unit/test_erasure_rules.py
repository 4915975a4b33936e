"""Erasure's pure rules: which rows of a batch carry no personal values, whom a batch
erases, the tombstone of a request, erased rows read back, and durations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from user_events_schemas.builder import build_event

from consumer.core.batchplan import BatchPlan, plan_batch
from consumer.core.decode import stored_payload
from consumer.core.durations import format_duration, parse_duration
from consumer.core.erasure import (
    ERASE_REQUEST_SOURCE,
    decode_logged,
    erasing_deletes,
    personal_of,
    request_tombstone,
    sealing_keys,
    was_erased,
)
from consumer.core.projection import UserState, Version, apply_event
from consumer.core.records import Outcome, Rejection
from consumer.core.rows import EVENT_COLUMNS, event_rows, log_record
from consumer.core.sealing import Sealer, new_key, unseal
from consumer.edges.store_log import LogDay, days_before
from consumer.tools.erase import parse_request as erase_request
from consumer.tools.errors import BadArgument
from consumer.tools.prune import parse_request as prune_request
from tests.factories import accepted, user_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSONAL = {"email": "a@example.com", "name": "A"}


def event(type: str, user: str, seq: int, data: dict[str, str] | None = None) -> dict[str, object]:
    return build_event(
        type, user, data, source="/s", sequence=seq, time=T0 + timedelta(seconds=seq)
    )


def plan(*events: dict[str, object], states: dict[str, UserState] | None = None) -> BatchPlan:
    batch = [accepted(e, offset=i) for i, e in enumerate(events)]
    return plan_batch(batch, states or {}, (), {})


class Keys:
    """New keys, named in the order they are made."""

    def __init__(self) -> None:
        self.made: list[bytes] = []

    def __call__(self) -> bytes:
        self.made.append(f"key{len(self.made)}".encode())
        return self.made[-1]


def test_a_new_user_gets_a_key_and_its_events_are_sealed_with_it() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL), event("user.updated", "u", 2, {"name": "B"})
    )
    keys = Keys()
    sealed_with, after = sealing_keys(made.logged, {}, keys)
    assert sealed_with == [b"key0", b"key0"] and after == {"u": b"key0"}
    assert erasing_deletes(made.logged) == {}


def test_a_delete_destroys_the_key_that_sealed_the_rows_before_it_and_stale_ones_get_none() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL),
        event("user.created", "v", 1, {"email": "v@example.com", "name": "V"}),
        event("user.deleted", "u", 3),
        event("user.updated", "u", 2, {"name": "late"}),  # stale: older than the delete
    )
    logged = made.logged
    assert [v.result for v in logged] == [Outcome.APPLIED] * 3 + [Outcome.STALE]
    sealed_with, after = sealing_keys(logged, {}, Keys())
    assert sealed_with == [b"key0", b"key1", None, None]
    assert after == {"u": None, "v": b"key1"}  # key0 is gone with the users row's key
    assert list(erasing_deletes(logged)) == ["u"]


def test_a_user_created_again_after_its_delete_gets_a_new_key() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL),
        event("user.deleted", "u", 2),
        event("user.created", "u", 3, {"email": "new@example.com", "name": "New"}),
    )
    sealed_with, after = sealing_keys(made.logged, {"u": b"old"}, Keys())
    assert sealed_with == [b"old", None, b"key0"] and after == {"u": b"key0"}


def test_an_event_of_a_user_deleted_before_the_batch_is_written_without_personal_values() -> None:
    tombstone = Version(5, T0, "/s", "d")
    state = user_state(
        "u", status="deleted", email=None, name=None, at=T0, versions=(tombstone,) * 3
    )
    made = plan(event("user.created", "u", 1, PERSONAL), states={"u": state})
    assert made.logged[0].result is Outcome.STALE
    sealed_with, _ = sealing_keys(made.logged, {"u": None}, Keys())
    assert sealed_with == [None]
    [row] = event_rows(made.logged, sealed_with, Sealer())
    payload = orjson.loads(row[EVENT_COLUMNS.index("payload")])
    assert payload["data"] == {"email": None, "name": None}
    assert row[EVENT_COLUMNS.index("personal")] is None


def test_a_row_seals_only_the_personal_values_the_event_carried_and_for_its_user() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL),
        event("user.updated", "u", 2, {"name": "Bartholomew"}),
    )
    key = new_key()
    row = event_rows(made.logged, [key, key], Sealer())[1]
    payload = orjson.loads(row[EVENT_COLUMNS.index("payload")])
    sealed = row[EVENT_COLUMNS.index("personal")]
    assert payload["data"] == {"name": None}  # carried, never in plain
    assert "Bartholomew" not in json.dumps(payload) and b"Bartholomew" not in sealed
    assert unseal(key, "u", sealed) == {"name": "Bartholomew"}
    assert unseal(key, "v", sealed) is None  # sealed for its user only
    assert unseal(new_key(), "u", sealed) is None
    assert personal_of(payload, sealed, key) == {"name": "Bartholomew"}
    assert not was_erased(payload, sealed, key)
    assert personal_of(payload, sealed, None) is None and was_erased(payload, sealed, None)


def test_a_logged_row_reads_back_with_its_key_and_as_erased_without_it() -> None:
    [verdict] = plan(event("user.created", "u", 1, PERSONAL)).logged
    key = new_key()
    [row] = event_rows([verdict], [key], Sealer())
    record = log_record("t", 0, 0, row[EVENT_COLUMNS.index("payload")])
    sealed = row[EVENT_COLUMNS.index("personal")]
    kept = decode_logged(record, sealed, {"u": key})
    assert kept == verdict.event  # what rebuild reads back decodes to the same event
    erased = decode_logged(record, sealed, {})
    assert not isinstance(erased, Rejection)
    assert erased.data is not None and (erased.data.email, erased.data.name) == (None, None)
    assert (erased.id, erased.subject, erased.sequence) == (verdict.event.id, "u", 1)
    state, outcome = apply_event(None, erased)
    assert outcome is Outcome.APPLIED and state is not None and state.email is None
    # A row from before keys, in plain text, reads back as it is.
    plain = orjson.loads(stored_payload(verdict.event))
    plain["data"] = PERSONAL
    legacy = decode_logged(log_record("t", 0, 0, orjson.dumps(plain).decode()), None, {})
    assert legacy == verdict.event


def test_a_requests_tombstone_is_newer_than_everything_the_user_holds() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ahead = Version(7, now + timedelta(hours=1), "/s", "x")  # a publisher's clock ran ahead
    state = user_state("u", at=T0, versions=(ahead,) * 3)
    tombstone = request_tombstone("u", "r1", now, state)
    assert (tombstone.source, tombstone.id, tombstone.subject) == (ERASE_REQUEST_SOURCE, "r1", "u")
    assert tombstone.time > ahead.time
    after, outcome = apply_event(state, tombstone)
    assert outcome is Outcome.APPLIED and after is not None
    assert (after.status, after.email, after.name) == ("deleted", None, None)
    # An event published before the request is older than the tombstone: stale.
    late = accepted(event("user.created", "u", 8, PERSONAL), offset=0)[1]
    assert apply_event(after, late)[1] is Outcome.STALE
    assert request_tombstone("u", "r2", now, None).time == now


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        (" 2w ", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_durations_read_as_operators_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "30", "1.5d", "-1d", "30 days", "P30D", "1y"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_only_days_wholly_before_the_horizon_are_pruned() -> None:
    days = [LogDay(T0.date() + timedelta(days=i), f"d{i}", 0) for i in range(4)]
    horizon = T0 + timedelta(days=2, hours=5)
    assert [d.table for d in days_before(days, horizon)] == ["d0", "d1"]
    assert [d.table for d in days_before(days, T0 + timedelta(days=2))] == ["d0", "d1"]


def test_prune_takes_one_horizon_and_never_one_in_the_future() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert prune_request(None, "30d", False, now).horizon == now - timedelta(days=30)
    assert prune_request("2026-05-01T00:00:00Z", None, True, now).horizon == datetime(
        2026, 5, 1, tzinfo=UTC
    )
    for before, older in ((None, None), ("2026-05-01T00:00:00Z", "1d")):
        with pytest.raises(BadArgument, match="give one of"):
            prune_request(before, older, False, now)
    with pytest.raises(BadArgument, match="in the future"):
        prune_request("2026-07-01T00:00:00Z", None, False, now)


@pytest.mark.parametrize(
    ("user", "reason", "says"),
    [
        ("", "ticket 1", "--user-id is empty"),
        ("u", "  ", "--reason is empty"),
        ("u", "from bob@example.com", "looks like an email address"),
        ("u", "x" * 501, "longer than 500"),
    ],
)
def test_erase_refuses_what_it_cannot_keep_for_ever(user: str, reason: str, says: str) -> None:
    with pytest.raises(BadArgument, match=says):
        erase_request(user, reason, False)
    assert erase_request("u", " ticket 1 ", True).reason == "ticket 1"


def test_a_late_event_of_an_earlier_life_is_never_sealed_with_the_new_key() -> None:
    """Created, deleted, created again (the person signed up again): a late update of
    the first life is stale, and must not bring the erased email back under the new key."""
    second = Version(3, T0 + timedelta(seconds=3), "/s", "c2")
    state = user_state("u", email="new@example.com", name="New", at=T0, versions=(second,) * 3)
    late = plan(event("user.updated", "u", 1, {"email": "old@example.com"}), states={"u": state})
    assert late.logged[0].result is Outcome.STALE
    sealed_with, after = sealing_keys(late.logged, {"u": b"new-key"}, Keys())
    assert sealed_with == [None] and after == {"u": b"new-key"}
