"""Records and events as the tests build them: one place for their defaults.

A file that needs other defaults for all its calls binds them once, with
``functools.partial`` (or a one-line function where a default follows an argument, as
an event id from the user), instead of writing its own copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from user_events_schemas import build_event

from consumer.core.decode import AnyUserEvent, decode
from consumer.core.projection import Status, UserState, Version
from consumer.core.records import KafkaRecord, Rejection

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# A Kafka message as the schema package's builders make it: key, value, headers.
Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def record(
    value: bytes | None = b"{}",
    headers: Iterable[tuple[str, bytes]] | None = None,
    *,
    topic: str = "t",
    partition: int = 0,
    offset: int = 7,
    timestamp_ms: int = 1_700_000_000_000,
    key: bytes | None = b"k",
) -> KafkaRecord:
    """A fetched record of ``value`` and ``headers``."""
    return KafkaRecord(topic, partition, offset, timestamp_ms, key, value, tuple(headers or ()))


def record_of(message: Message, **where: Any) -> KafkaRecord:
    """A fetched record of a ``message`` (``structured_record``, ``binary_record``)."""
    key, value, headers = message
    return record(value, headers, key=key, **where)


def accepted(event: dict[str, Any], **where: Any) -> tuple[KafkaRecord, AnyUserEvent]:
    """A record of ``event`` (plain JSON) and the event it decodes to, as a batch holds
    the records that passed decoding."""
    fetched = record(orjson.dumps(event), key=None, timestamp_ms=0, **where)
    decoded = decode(fetched, 10**6)
    assert not isinstance(decoded, Rejection), decoded
    return fetched, decoded


def created(
    user: str = "u1",
    seq: int | None = None,
    *,
    email: str | None = None,
    name: str | None = None,
    source: str = "/tests",
    at: datetime | None = None,
    event_id: str | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    """A valid ``user.created`` event of ``user`` (email ``<user>@example.com``, name
    ``Name <user>`` unless given), at ``T0`` plus ``seq`` seconds unless ``at`` is given;
    ``envelope`` then replaces top-level fields, valid or not."""
    data = {"email": email or f"{user}@example.com", "name": name or f"Name {user}"}
    at = at or T0 + timedelta(seconds=seq or 0)
    event = build_event(
        "user.created", user, data, source=source, sequence=seq, time=at, event_id=event_id
    )
    return event | envelope


def user_state(
    user: str = "u1",
    *,
    status: Status = "active",
    email: str | None = "a@example.com",
    name: str | None = "A",
    at: datetime = T0,
    versions: tuple[Version, Version, Version],
) -> UserState:
    """A user's row, built by name; ``versions`` are the status, email and name registers'."""
    status_version, email_version, name_version = versions
    return UserState(
        user_id=user,
        status=status,
        email=email,
        name=name,
        created_at=at,
        updated_at=at,
        status_version=status_version,
        email_version=email_version,
        name_version=name_version,
    )
