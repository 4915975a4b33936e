"""Erasure's pure rules: which rows of a batch carry no personal values, whom a batch
erases, the tombstone of a request, erased rows read back, and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from user_events_schemas.builder import build_event

from consumer.core.decode import AnyUserEvent, decode, stored_payload
from consumer.core.durations import format_duration, parse_duration
from consumer.core.erasure import (
    ERASE_REQUEST_SOURCE,
    decode_logged,
    erasing_deletes,
    request_tombstone,
    rows_erased,
    without_personal,
)
from consumer.core.ordering import BatchPlan, UserState, Version, apply_event, plan_batch
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.rows import log_record
from consumer.edges.store_log import LogDay, days_before
from consumer.tools.common import BadArgument
from consumer.tools.erase import parse_request as erase_request
from consumer.tools.prune import parse_request as prune_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSONAL = {"email": "a@example.com", "name": "A"}


def record(event: dict[str, object], offset: int = 0) -> tuple[KafkaRecord, AnyUserEvent]:
    kafka = KafkaRecord("t", 0, offset, 0, None, orjson.dumps(event), ())
    decoded = decode(kafka, 10**6)
    assert not isinstance(decoded, Rejection)
    return kafka, decoded


def event(type: str, user: str, seq: int, data: dict[str, str] | None = None) -> dict[str, object]:
    return build_event(
        type, user, data, source="/s", sequence=seq, time=T0 + timedelta(seconds=seq)
    )


def plan(*events: dict[str, object], states: dict[str, UserState] | None = None) -> BatchPlan:
    accepted = [record(e, i) for i, e in enumerate(events)]
    return plan_batch(accepted, states or {}, (), {})


def test_a_batch_without_deletes_keeps_every_rows_personal_values() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL), event("user.updated", "u", 2, {"name": "B"})
    )
    assert without_personal(made.logged, {}) == set()
    assert erasing_deletes(made.logged) == {}


def test_rows_before_a_delete_in_the_batch_and_stale_ones_after_it_lose_personal_values() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL),
        event("user.created", "v", 1, {"email": "v@example.com", "name": "V"}),
        event("user.deleted", "u", 3),
        event("user.updated", "u", 2, {"name": "late"}),  # stale: older than the delete
    )
    logged = made.logged
    assert [v.result for v in logged] == [Outcome.APPLIED] * 3 + [Outcome.STALE]
    assert without_personal(logged, {}) == {0, 2, 3}
    assert list(erasing_deletes(logged)) == ["u"]
    assert rows_erased(logged, {0, 2, 3}) == {"u": 2}


def test_a_user_created_again_after_its_delete_keeps_the_new_values() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL),
        event("user.deleted", "u", 2),
        event("user.created", "u", 3, {"email": "new@example.com", "name": "New"}),
    )
    assert without_personal(made.logged, {}) == {0, 1}


def test_an_event_of_a_user_deleted_before_the_batch_is_written_without_personal_values() -> None:
    tombstone = Version(5, T0, "/s", "d")
    state = UserState("u", "deleted", None, None, T0, T0, tombstone, tombstone, tombstone)
    made = plan(event("user.created", "u", 1, PERSONAL), states={"u": state})
    assert made.logged[0].result is Outcome.STALE
    assert without_personal(made.logged, {"u": state}) == {0}
    payload = orjson.loads(stored_payload(made.logged[0].event, personal=False))
    assert payload["data"] == {"email": None, "name": None}


def test_an_erased_payload_keeps_only_the_keys_the_event_carried() -> None:
    made = plan(
        event("user.created", "u", 1, PERSONAL), event("user.updated", "u", 2, {"name": "B"})
    )
    payload = orjson.loads(stored_payload(made.logged[1].event, personal=False))
    assert payload["data"] == {"name": None}
    assert orjson.loads(stored_payload(made.logged[1].event))["data"] == {"name": "B"}


def test_an_erased_row_reads_back_as_its_event_without_personal_values() -> None:
    [verdict] = plan(event("user.created", "u", 1, PERSONAL)).logged
    erased = decode_logged(log_record("t", 0, 0, stored_payload(verdict.event, personal=False)))
    assert not isinstance(erased, Rejection)
    assert erased.data is not None and (erased.data.email, erased.data.name) == (None, None)
    assert (erased.id, erased.subject, erased.sequence) == (verdict.event.id, "u", 1)
    state, outcome = apply_event(None, erased)
    assert outcome is Outcome.APPLIED and state is not None and state.email is None
    kept = decode_logged(log_record("t", 0, 0, stored_payload(verdict.event)))
    assert not isinstance(kept, Rejection) and kept.data is not None
    assert kept.data.email == "a@example.com"


def test_a_requests_tombstone_is_newer_than_everything_the_user_holds() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ahead = Version(7, now + timedelta(hours=1), "/s", "x")  # a publisher's clock ran ahead
    state = UserState("u", "active", "a@example.com", "A", T0, T0, ahead, ahead, ahead)
    tombstone = request_tombstone("u", "r1", now, state)
    assert (tombstone.source, tombstone.id, tombstone.subject) == (ERASE_REQUEST_SOURCE, "r1", "u")
    assert tombstone.time > ahead.time
    after, outcome = apply_event(state, tombstone)
    assert outcome is Outcome.APPLIED and after is not None
    assert (after.status, after.email, after.name) == ("deleted", None, None)
    # An event published before the request is older than the tombstone: stale.
    late = record(event("user.created", "u", 8, PERSONAL))[1]
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
