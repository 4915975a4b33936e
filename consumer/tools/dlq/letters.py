"""Reading a dead letter: its provenance headers (``dlq.*``). Pure.

Which event it holds is ``consumer.core.identity``'s to say, as for any record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from user_events_schemas import (
    DLQ_ERRORS,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_REDRIVE_COUNT,
)

from consumer.core.records import Headers, KafkaRecord

ErrorEntry = dict[str, str]


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, as text (None when absent)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value.decode("utf-8", "replace") if value is not None else ""
    return found


def reason_of(letter: KafkaRecord) -> str:
    """Why the record was dead-lettered (``dlq.reason``), ``(none)`` when not said."""
    return header(letter.headers, DLQ_REASON) or "(none)"


def failed_at(letter: KafkaRecord) -> datetime:
    """When the record failed: ``dlq.failed.at``, else the dead letter's own timestamp."""
    text = header(letter.headers, DLQ_FAILED_AT)
    if text:
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return written_at(letter)


def written_at(letter: KafkaRecord) -> datetime:
    """The dead letter's own Kafka timestamp."""
    return datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC)


def rfc3339(moment: datetime) -> str:
    """A time for display: RFC 3339, to the millisecond, as ``dlq.failed.at`` is written."""
    return moment.isoformat(timespec="milliseconds")


def redrive_count(headers: Headers) -> int:
    """How many times this record was redriven before (0 when never, or unreadable)."""
    text = header(headers, DLQ_REDRIVE_COUNT)
    try:
        return max(0, int(text)) if text is not None else 0
    except ValueError:
        return 0


def errors_of(headers: Headers) -> list[ErrorEntry] | None:
    """The ``dlq.errors`` entries (``loc``, ``type``, and a conflict's ``user_id``); None
    when there is no such header (a dead letter written before it existed) or it is not
    a JSON list."""
    text = header(headers, DLQ_ERRORS)
    if text is None:
        return None
    try:
        entries = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(entries, list):
        return None
    return [
        {str(name): str(value) for name, value in entry.items()}
        for entry in entries
        if isinstance(entry, dict)
    ]


def describe_errors(entries: list[ErrorEntry]) -> str:
    """``data.email: conflict (held by u-123); time: time_format``, for a person."""
    return "; ".join(
        f"{entry.get('loc') or '<event>'}: {entry.get('type', '?')}"
        + (f" (held by {entry['user_id']})" if "user_id" in entry else "")
        for entry in entries
    )
