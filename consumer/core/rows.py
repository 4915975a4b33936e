"""Rows of the two tables and the states and records they hold, both ways. Pure.

``users`` keeps each register's version in one JSON document (``versions``, a text column:
PostgreSQL need not parse what only this module reads); the event log
keeps the structured event as its payload, which is a record again for ``rebuild``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import repeat
from typing import Any, Protocol

import orjson

from consumer.core.batchplan import Verdict
from consumer.core.decode import stored_parts
from consumer.core.projection import UserState, Version
from consumer.core.records import KafkaRecord
from consumer.core.sealing import Sealer

USER_COLUMNS = (
    "user_id",
    "email",
    "name",
    "status",
    "created_at",
    "updated_at",
    "versions",
    "data_key",
)
EVENT_COLUMNS = (
    "source",
    "event_id",
    "user_id",
    "type",
    "time",
    "sequence",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "payload",
    "outcome",
    "personal",
    "parked_at",
)


class Row(Protocol):
    """A row read by name: a database record or a plain mapping."""

    def __getitem__(self, key: str, /) -> Any: ...


def state_from_row(row: Row) -> UserState:
    """A ``users`` row -> the state ordering decisions compare against."""
    versions = row["versions"]
    if isinstance(versions, str):
        versions = orjson.loads(versions)
    status, email, name = versions["status"], versions["email"], versions["name"]
    # The registers often hold one version: parse it once.
    status_version = Version.from_json(status)
    email_version = status_version if email == status else Version.from_json(email)
    name_version = (
        status_version
        if name == status
        else email_version
        if name == email
        else Version.from_json(name)
    )
    # Positionally, in the field order, as the appliers build it (once per row read).
    return UserState(
        row["user_id"],
        row["status"],
        row["email"],
        row["name"],
        row["created_at"],
        row["updated_at"],
        status_version,
        email_version,
        name_version,
    )


def versions_json(user: UserState) -> str:
    """The ``versions`` column: each register's version as [sequence, time, source, id].

    orjson writes an aware datetime as ``isoformat`` does for offsets in whole minutes,
    the only ones RFC 3339 (and so the contract) allows; it is several times faster than
    the standard library here, where it runs once per user row.
    """
    return orjson.dumps(
        {
            "status": tuple(user.status_version),
            "email": tuple(user.email_version),
            "name": tuple(user.name_version),
        }
    ).decode()


def version_json(version: Version) -> str:
    """One version as ``versions`` holds each register's, and ``erasures`` a tombstone's."""
    return orjson.dumps(tuple(version)).decode()


def user_rows(
    users: Iterable[UserState], keys: Mapping[str, bytes | None]
) -> list[tuple[Any, ...]]:
    """Rows for ``users`` (in ``USER_COLUMNS`` order), each with its key in ``keys``
    (absent: none, as for a deleted user)."""
    return [
        (
            user.user_id,
            user.email,
            user.name,
            user.status,
            user.created_at,
            user.updated_at,
            versions_json(user),
            keys.get(user.user_id),
        )
        for user in users
    ]


def event_rows(
    verdicts: Iterable[Verdict],
    keys: Iterable[bytes | None],
    sealer: Sealer,
    parked_at: Iterable[datetime | None] | None = None,
) -> list[tuple[Any, ...]]:
    """Rows for ``user_events`` (in ``EVENT_COLUMNS`` order), each verdict's personal values
    sealed with its key in ``keys`` (None: not written); ``parked_at``: when each healed
    event was parked (None: all were applied as they arrived)."""
    rows = []
    seal = sealer.seal
    waited = repeat(None) if parked_at is None else parked_at
    for v, key, since in zip(verdicts, keys, waited, strict=False):
        event, record = v.event, v.record
        payload, personal = stored_parts(event)
        rows.append(
            (
                event.source,
                event.id,
                event.subject,
                event.type,
                event.time,
                event.sequence,
                record.topic,
                record.partition,
                record.offset,
                payload,
                v.result,  # an Outcome, a str: asyncpg writes it as its text, without a call
                None if key is None or personal is None else seal(key, event.subject, personal),
                since,
            )
        )
    return rows


def log_record(topic: str, partition: int, offset: int, payload: str) -> KafkaRecord:
    """An event-log row as the record it came from (the payload is the structured event)."""
    return KafkaRecord(topic, partition, offset, 0, None, payload.encode(), ())
