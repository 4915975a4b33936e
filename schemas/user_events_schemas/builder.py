"""Build valid user events and their Kafka records, for publishers and tests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from user_events_schemas.models import EVENT_TYPES, UserEvent
from user_events_schemas.wire import BINARY_PREFIX

_event_adapter: TypeAdapter[Any] = TypeAdapter(UserEvent)

KafkaHeaders = list[tuple[str, bytes]]


def build_event(
    type: str,
    user_id: str,
    data: dict[str, Any] | None = None,
    *,
    source: str,
    sequence: int | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """Return a CloudEvent as a JSON-ready dict, checked against the contract.

    ``source`` names the publisher and has no default: the consumer deduplicates by
    ``(source, id)``, so two publishers sharing an example value would share one
    idempotency namespace.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {EVENT_TYPES}")
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "subject": user_id,
        "time": (time or datetime.now(UTC)).isoformat(),
        "datacontenttype": "application/json",
    }
    if sequence is not None:
        event["sequence"] = sequence
    if data is not None:
        event["data"] = data
    _event_adapter.validate_python(event)
    return event


def structured_record(event: dict[str, Any]) -> tuple[bytes, bytes, KafkaHeaders]:
    """Key, value and headers of an event in CloudEvents structured mode."""
    headers = [("content-type", b"application/cloudevents+json")]
    return event["subject"].encode(), json.dumps(event).encode(), headers


def binary_record(event: dict[str, Any]) -> tuple[bytes, bytes, KafkaHeaders]:
    """Key, value and headers of an event in CloudEvents binary mode."""
    headers: KafkaHeaders = [("content-type", b"application/json")]
    for name, value in event.items():
        if name in ("data", "datacontenttype"):
            continue
        headers.append((BINARY_PREFIX + name, str(value).encode()))
    value = json.dumps(event.get("data") or {}).encode()
    return event["subject"].encode(), value, headers
