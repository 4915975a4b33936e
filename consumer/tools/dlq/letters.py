"""Reading a dead letter's provenance headers (``dlq.*``). Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.core.records import Headers, KafkaRecord
from consumer.edges.deadletter import FAILED_AT, REASON

REDRIVE_COUNT = "dlq.redrive.count"
DLQ_PREFIX = "dlq."


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, as text (None when absent)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value.decode("utf-8", "replace") if value is not None else ""
    return found


def reason_of(letter: KafkaRecord) -> str:
    """Why the record was dead-lettered (``dlq.reason``), ``(none)`` when not said."""
    return header(letter.headers, REASON) or "(none)"


def failed_at(letter: KafkaRecord) -> datetime:
    """When the record failed: ``dlq.failed.at``, else the dead letter's own timestamp."""
    text = header(letter.headers, FAILED_AT)
    if text:
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC)


def redrive_count(headers: Headers) -> int:
    """How many times this record was redriven before (0 when never, or unreadable)."""
    text = header(headers, REDRIVE_COUNT)
    try:
        return max(0, int(text)) if text is not None else 0
    except ValueError:
        return 0
