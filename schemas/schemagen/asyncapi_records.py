"""The Kafka records of the AsyncAPI document: binary-mode headers and examples.

Both are derived from the contract rather than written again: the ``ce_*`` header schemas
from the event's JSON Schema (a header holds text, so an attribute keeps its string
form), the examples from the record builders, checked by the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from user_events_schemas import (
    BINARY_PREFIX,
    DLQ_REDRIVE_COUNT,
    UserEvent,
    binary_record,
    structured_record,
)

from schemagen.deadletter import OPTIONAL_HEADERS

Schema = dict[str, Any]

# In binary mode the data's content type is the content-type header (the binding's rule),
# and data is the value.
_NOT_HEADERS = ("data", "datacontenttype")
_event_adapter: TypeAdapter[Any] = TypeAdapter(UserEvent)

_DATA = {
    "user.created": {"email": "ada@example.com", "name": "Ada Lovelace"},
    "user.updated": {"name": "Ada King"},
    "user.deleted": None,
}


def binary_headers_schema(event_type: str, event: Schema) -> Schema:
    """The headers of a binary-mode record of ``event_type``, from its event schema."""
    properties: Schema = {
        "content-type": {
            "type": "string",
            "description": (
                "The data's content type (CloudEvents datacontenttype): application/json. "
                "Anything but application/cloudevents..., which would make the record "
                "structured."
            ),
            "examples": ["application/json"],
        }
    }
    for attribute, schema in event["properties"].items():
        if attribute not in _NOT_HEADERS:
            properties[BINARY_PREFIX + attribute] = _as_text(attribute, schema)
    properties[DLQ_REDRIVE_COUNT] = OPTIONAL_HEADERS[DLQ_REDRIVE_COUNT]
    return {
        "type": "object",
        "description": (
            f"Headers of a binary-mode {event_type} record: the CloudEvents attributes as "
            "ce_* headers, UTF-8 text. Other headers, unknown extension attributes "
            "included, are ignored."
        ),
        "required": [
            BINARY_PREFIX + name for name in event["required"] if name not in _NOT_HEADERS
        ],
        "properties": properties,
    }


def _as_text(attribute: str, schema: Schema) -> Schema:
    """The attribute's schema as a header holds it: its string form (a ``sequence`` is a
    string of digits, and loses the description of its other forms), without pydantic's
    title and its null default."""
    kept = {key: value for key, value in schema.items() if key not in ("title", "default")}
    if "anyOf" in kept:
        strings = [branch for branch in kept.pop("anyOf") if branch.get("type") == "string"]
        if len(strings) != 1:
            raise ValueError(f"no single string form for the {attribute!r} attribute")
        kept.pop("description", None)
        kept = {**strings[0], **kept}
    if kept.get("type") != "string":
        raise ValueError(f"the {attribute!r} attribute has no string form")
    kept["description"] = " ".join(
        filter(None, [f"The CloudEvents attribute {attribute}.", kept.get("description")])
    )
    return kept


def example_event(event_type: str) -> dict[str, Any]:
    """A valid event of ``event_type``, the same in every generated document."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "9f1c2e4a-5d7b-4c1e-8f00-3a2b1c0d9e8f",
        "source": "/signup-service",
        "type": event_type,
        "subject": "u-42",
        "time": "2026-11-25T10:15:30.120Z",
        "sequence": list(_DATA).index(event_type) + 1,
        "datacontenttype": "application/json",
    }
    if _DATA[event_type] is not None:
        event["data"] = _DATA[event_type]
    _event_adapter.validate_python(event)
    return event


def examples(event_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Message examples of ``event_type`` in structured and in binary mode, as the record
    builders make them."""
    event = example_event(event_type)
    return (
        _example(event_type, "structured", structured_record, event),
        _example(event_type, "binary", binary_record, event),
    )


def _example(
    event_type: str,
    mode: str,
    builder: Callable[[dict[str, Any]], tuple[bytes, bytes, list[tuple[str, bytes]]]],
    event: dict[str, Any],
) -> dict[str, Any]:
    _, value, headers = builder(event)
    return {
        "name": f"{event_type}-{mode}",
        "summary": f"{builder.__name__}(event) of the user-events-schemas package",
        "headers": {name: text.decode() for name, text in headers},
        "payload": json.loads(value),
    }
