"""Which events of a batch are looked up in the event log. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from user_events_schemas.models import UserUpdated

from consumer.core.dedupe import possibly_logged
from consumer.core.projection import UserState, Version
from consumer.core.records import KafkaRecord
from tests.factories import user_state

T0 = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def state(status: Version, email: Version, name: Version) -> UserState:
    return user_state(at=T0, versions=(status, email, name))


def test_only_events_not_newer_than_their_users_latest_version_may_be_logged() -> None:
    def updated(user: str, sequence: int) -> tuple[KafkaRecord, UserUpdated]:
        event = UserUpdated.model_validate(
            {
                "specversion": "1.0",
                "id": f"{user}-{sequence}",
                "source": "/profile",
                "subject": user,
                "time": T0,
                "type": "user.updated",
                "sequence": sequence,
                "data": {"name": "B"},
            }
        )
        return KafkaRecord("t", 0, sequence, 0, None, None, ()), event

    at_three = Version(3, T0, "/profile", "u1-3")
    states = {"u1": state(Version(1, T0, "/signup", "e1"), at_three, at_three)}
    batch = [updated("u1", 2), updated("u1", 3), updated("u1", 4), updated("u2", 1)]
    # Older and equal (a duplicate) may be logged; newer may not, nor any of a user
    # without a row.
    assert [event.id for _, event in possibly_logged(batch, states)] == ["u1-2", "u1-3"]
