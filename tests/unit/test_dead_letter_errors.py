"""The ``dlq.errors`` header: field paths and error kinds of every rejection, never a
value, small whatever the record. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial

import pytest
from user_events_schemas import binary_record
from user_events_schemas.rejections import field_errors
from user_events_schemas.wire import DLQ_ERRORS, DLQ_MOST_ERRORS

from consumer.core.batchplan import email_conflict, plan_batch
from consumer.core.decode import decode
from consumer.core.records import FieldError, KafkaRecord, Reason, Rejection
from consumer.edges.deadletter import DROP_ORDER, dead_letter_message, errors_json
from consumer.pipeline.unreadable import UNREADABLE
from tests import factories
from tests.factories import record
from tests.unit.test_projection import ev

SECRET_EMAIL = "ada.secret@example.com"


created = partial(factories.created, email=SECRET_EMAIL, name="Ada")


def rejection_of(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Rejection:
    verdict = decode(record(value, headers), 10_000)
    assert isinstance(verdict, Rejection)
    return verdict


def test_schema_errors_are_paths_into_the_event_without_the_type_tag() -> None:
    event = created(data={"email": "Ada Secret <nope>", "name": ""}, time="yesterday")
    rejection = rejection_of(json.dumps(event).encode())
    assert rejection.reason is Reason.INVALID
    assert rejection.errors == (
        FieldError("time", "time_format"),
        FieldError("data.email", "value_error"),
        FieldError("data.name", "string_too_short"),
    )
    # The message names the same paths (issue 23), at most five errors.
    assert (
        rejection.error == "time: time_format; data.email: value_error; data.name: string_too_short"
    )


def test_a_missing_or_unknown_type_is_located_at_the_type_attribute() -> None:
    missing = {k: v for k, v in created().items() if k != "type"}
    assert rejection_of(json.dumps(missing).encode()).errors == (
        FieldError("type", "union_tag_not_found"),
    )
    unknown = rejection_of(json.dumps(created(type="user.renamed")).encode())
    assert unknown.reason is Reason.UNKNOWN_TYPE
    assert unknown.errors == (FieldError("type", "union_tag_invalid"),)


def test_a_binary_mode_record_missing_a_header_names_the_attribute() -> None:
    _, value, headers = binary_record(created())
    without_id = [(name, raw) for name, raw in headers if name != "ce_id"]
    assert rejection_of(value, without_id).errors == (FieldError("id", "missing"),)
    bad_utf8 = [*headers, ("ce_source", b"\xff")]
    assert rejection_of(value, bad_utf8).errors == (FieldError("source", "not_utf8"),)
    assert rejection_of(b"[1]", headers).errors == (FieldError("data", "dict_type"),)
    assert rejection_of(b"{oops", headers).errors == (FieldError("data", "json_invalid"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, FieldError("", "null_value")),
        (b"{not json", FieldError("", "json_invalid")),
        (b"[1, 2]", FieldError("", "dict_type")),
        (b'{"a": NaN}', FieldError("", "non_finite_number")),
    ],
)
def test_an_undecodable_value_gets_one_entry_for_the_whole_event(
    value: bytes | None, expected: FieldError
) -> None:
    rejection = rejection_of(value)
    assert rejection.reason is Reason.UNDECODABLE and expected in rejection.errors


def test_a_record_over_the_limit_is_one_too_large_entry() -> None:
    verdict = decode(record(json.dumps(created()).encode()), 100)
    assert isinstance(verdict, Rejection)
    assert verdict.errors == (FieldError("", "too_large"),)


def test_the_errors_never_hold_an_input_value() -> None:
    event = created(data={"email": SECRET_EMAIL.replace("@", " at "), "name": "Ada" * 100})
    rejection = rejection_of(json.dumps(event).encode())
    shown = errors_json(rejection)
    assert "secret" not in shown and "Ada" not in shown
    assert json.loads(shown) == [
        {"loc": "data.email", "type": "value_error"},
        {"loc": "data.name", "type": "string_too_long"},
    ]


def test_a_conflict_names_the_user_holding_the_email() -> None:
    plan = plan_batch(
        [(record(b""), ev("user.created", "b", 1, email="Held@Example.com"))],
        states={},
        logged_keys=[],
        email_owners={"held@example.com": "u-123"},
    )
    (rejection,) = [result for _, result in plan.rejected]
    assert rejection == email_conflict("u-123")
    assert rejection.error == "email belongs to another active user: u-123"
    assert json.loads(errors_json(rejection)) == [
        {"loc": "data.email", "type": "conflict", "user_id": "u-123"}
    ]
    unknown = email_conflict(None)  # a holder the writer could not name
    assert json.loads(errors_json(unknown)) == [{"loc": "data.email", "type": "conflict"}]


def test_an_update_for_an_unknown_user_is_located_at_the_subject() -> None:
    plan = plan_batch(
        [(record(b""), ev("user.updated", "ghost", 2, name="N"))],
        states={},
        logged_keys=[],
        email_owners={},
    )
    assert plan.rejected[0][1].errors == (FieldError("subject", "user_not_created"),)


def test_a_rejection_without_errors_of_its_own_gets_one_naming_its_reason() -> None:
    assert json.loads(errors_json(Rejection(Reason.INVALID, "x"))) == [
        {"loc": "", "type": "invalid"}
    ]
    assert json.loads(errors_json(UNREADABLE)) == [{"loc": "", "type": "unparseable"}]


def test_the_errors_header_is_capped_in_entries_and_length() -> None:
    many = tuple(FieldError("data." + "x" * 1000, "value_error") for _ in range(100))
    entries = json.loads(errors_json(Rejection(Reason.INVALID, "x", errors=many)))
    assert len(entries) == DLQ_MOST_ERRORS and all(len(e["loc"]) <= 200 for e in entries)


def test_the_errors_header_survives_when_everything_else_is_dropped() -> None:
    rejection = rejection_of(json.dumps(created(data={"email": "nope", "name": "A"})).encode())
    big = KafkaRecord("t", 0, 1, 0, b"k" * 100_000, b"v" * 100_000, (("h", b"x" * 100_000),))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    message = dead_letter_message(big, rejection, "g", at, 64 * 1024)
    assert message.dropped == DROP_ORDER
    assert json.loads(dict(message.headers)[DLQ_ERRORS] or b"") == [
        {"loc": "data.email", "type": "value_error"}
    ]


def test_pydantic_errors_outside_a_union_keep_their_whole_path() -> None:
    assert field_errors(
        [{"loc": ("data", "name"), "type": "missing", "msg": "", "input": None}]
    ) == (FieldError("data.name", "missing"),)
