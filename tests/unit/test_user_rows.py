"""The ``users`` row codec: a state written by ``user_rows`` reads back the same. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import AwareDatetime, TypeAdapter

from consumer.core.projection import UserState, Version
from consumer.core.rows import USER_COLUMNS, state_from_row, user_rows, versions_json
from tests.factories import user_state

T0 = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def state(status: Version, email: Version, name: Version) -> UserState:
    return user_state(at=T0, versions=(status, email, name))


def read_back(user: UserState) -> UserState:
    (row,) = user_rows([user], {user.user_id: b"key"})
    return state_from_row(dict(zip(USER_COLUMNS, row, strict=True)))


def test_a_state_reads_back_equal_with_shared_and_distinct_versions() -> None:
    created = Version(1, T0, "/signup", "e1")
    renamed = Version(2, T0 + timedelta(microseconds=1500), "/profile", "e2")
    unsequenced = Version(None, T0 + timedelta(hours=1), "/legacy", "e3")
    for user in (
        state(created, created, created),
        state(created, created, renamed),
        state(created, unsequenced, renamed),
    ):
        back = read_back(user)
        assert back == user
        # Registers that held one version share one parsed object again.
        assert (back.status_version is back.email_version) == (
            user.status_version == user.email_version
        )


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5+02:00", "2026-03-01T23:59:59.123456-05:30"],
)
def test_versions_are_stored_as_isoformat_lists_for_every_contract_time(text: str) -> None:
    """The stored format is [sequence, isoformat time, source, id] per register, whatever
    offset an event's RFC 3339 time carried, so older rows and tools read it unchanged."""
    when = TypeAdapter(AwareDatetime).validate_json(json.dumps(text))
    version = Version(7, when, "/s", "id-1")
    stored = json.loads(versions_json(state(version, version, version)))
    expected = [7, when.isoformat(), "/s", "id-1"]
    assert stored == {"status": expected, "email": expected, "name": expected}


def test_rows_written_by_the_standard_library_encoder_read_back() -> None:
    """Rows stored before the codec changed (json.dumps of isoformat lists) still parse."""
    when = datetime(2025, 6, 1, 8, 0, tzinfo=timezone(timedelta(hours=-7)))
    raw = [3, when.isoformat(), "/old", "x"]
    row = {
        "user_id": "u9",
        "email": None,
        "name": None,
        "status": "deleted",
        "created_at": when,
        "updated_at": when,
        "versions": json.dumps({"status": raw, "email": raw, "name": raw}),
    }
    back = state_from_row(row)
    assert back.status_version == Version(3, when, "/old", "x")
    assert back.name_version is back.status_version
