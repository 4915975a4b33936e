"""One vocabulary for field paths (issue 23): the ``dlq.error`` message, the ``dlq.errors``
entries and the publishers' validator name a field by the same dotted path into the
event, in either mode, by the contract package's rule (``field_path``). Pure."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from user_events_schemas import binary_record, build_event, structured_record
from user_events_schemas.cli import main
from user_events_schemas.rejections import WHOLE_EVENT, describe, field_path

from consumer.core.decode import decode
from consumer.core.records import FieldError, Reason, Rejection
from tests import factories
from tests.factories import record

SECRET_EMAIL = "ada.secret@example.com"
SECRET_NAME = "Ada Secretname"


created = partial(factories.created, email=SECRET_EMAIL, name=SECRET_NAME, seq=3)


def updated(**overrides: object) -> dict[str, Any]:
    data = {"name": SECRET_NAME}
    return build_event("user.updated", "u1", data, source="/tests", sequence=4) | overrides


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != name}


# Each invalid event, with the paths every report must name for it, in order.
INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bad time": (created(time="yesterday"), ["time"]),
    "bad email": (created(data={"email": "Ada <not-an-email>", "name": "Ada"}), ["data.email"]),
    "missing id": (without(created(), "id"), ["id"]),
    "bad data fields": (
        created(data={"email": SECRET_EMAIL.replace("@", " at "), "name": SECRET_NAME * 50}),
        ["data.email", "data.name"],
    ),
    "missing data field": (created(data={"email": SECRET_EMAIL}), ["data.name"]),
    "bad sequence": (created(sequence="+1"), ["sequence"]),
    "several at once": (
        without(created(time="2026-02-30T10:00:00Z", data={"email": "x", "name": ""}), "id"),
        ["id", "time", "data.email", "data.name"],
    ),
    "an update": (updated(time="yesterday", data={"name": ""}), ["time", "data.name"]),
}


def consumer_rejection(event: dict[str, Any], mode: str) -> Rejection:
    to_record = structured_record if mode == "structured" else binary_record
    _, value, headers = to_record(event)
    verdict = decode(record(value, headers), 10**6)
    assert isinstance(verdict, Rejection), mode
    return verdict


def message_paths(error: str) -> list[str]:
    """The paths a ``dlq.error`` message names: ``time: time_format; data.email: ...``."""
    return [part.rsplit(": ", 1)[0] for part in error.split("; ")]


def validator_paths(event: dict[str, Any], tmp_path: Path, capsys: Any) -> list[str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["validate", "--json", str(path)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    return [entry["loc"] for entry in json.loads(line)["errors"]]


@pytest.mark.parametrize("case", list(INVALID))
def test_the_message_the_errors_and_the_validator_name_the_same_paths_in_either_mode(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event, expected = INVALID[case]
    reported = validator_paths(event, tmp_path, capsys)
    assert reported == expected
    for mode in ("structured", "binary"):
        rejection = consumer_rejection(event, mode)
        assert rejection.reason is Reason.INVALID, mode
        assert [error.loc for error in rejection.errors] == expected, mode
        assert message_paths(rejection.error) == expected, mode
        assert rejection.error == describe(rejection.errors), mode
        # Never the tagged-union segment, never a value.
        assert "user." not in rejection.error, mode
        assert "secret" not in rejection.error.lower(), mode


def test_a_missing_type_is_located_at_type_in_the_message_too() -> None:
    rejection = consumer_rejection(without(created(), "type"), "structured")
    assert rejection.errors == (FieldError("type", "union_tag_not_found"),)
    assert rejection.error == "type: union_tag_not_found"


@pytest.mark.parametrize(
    ("loc", "kind", "path"),
    [
        (("user.created", "time"), "time_format", "time"),
        (("user.updated", "data", "name"), "string_too_short", "data.name"),
        (("user.deleted", "data"), "missing", "data"),
        (("user.created",), "model_type", ""),
        (("data", "email"), "value_error", "data.email"),  # outside a union: unchanged
        (("items", 0), "int_type", "items.0"),
        ((), "union_tag_not_found", "type"),
        ((), "json_invalid", ""),
    ],
)
def test_field_path_drops_the_type_tag_and_names_the_discriminator_type(
    loc: tuple[str | int, ...], kind: str, path: str
) -> None:
    assert field_path(loc, kind) == path


def test_describe_names_at_most_five_and_the_whole_event_as_such() -> None:
    errors = [FieldError("", "json_invalid"), *(FieldError(f"f{i}", "missing") for i in range(9))]
    assert describe(errors) == (
        f"{WHOLE_EVENT}: json_invalid; f0: missing; f1: missing; f2: missing; f3: missing"
    )
