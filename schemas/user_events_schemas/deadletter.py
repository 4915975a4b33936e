"""The dead-letter topic's side of the contract: the ``dlq.*`` headers and the reasons.

The consumer writes them; publishers and operators read them. They live here, beside the
event models, so that the AsyncAPI document can describe them without importing the
consumer; a test of the consumer's holds its own names equal to these. ``SCHEMAS`` are
JSON Schemas for the document's ``components/schemas``, where they refer to each other.
"""

from __future__ import annotations

from typing import Any

REASONS: dict[str, str] = {
    "undecodable": "null value, not UTF-8, not JSON, not an object, NaN or Infinity",
    "invalid": "fails the schema",
    "unknown_type": "a type other than user.created, user.updated, user.deleted",
    "conflict": "the email belongs to another active user",
    "unknown_user": "an update for a user id never created (after waiting PARK_TTL for it)",
    "too_large": "key, value and headers together over the consumer's MAX_MESSAGE_BYTES",
    "user_deleted": "an update for a deleted user, newer than its delete",
}
"""Every ``dlq.reason``, in the consumer's order, with what it means."""

MOST_ERRORS = 20
"""The most entries a ``dlq.errors`` list holds."""

_DECIMAL = {"type": "string", "pattern": "^-?[0-9]+$"}
_COMPONENTS = "#/components/schemas/"

REQUIRED_HEADERS: dict[str, dict[str, Any]] = {
    "dlq.reason": {
        "description": "Why the record was rejected.",
        "$ref": f"{_COMPONENTS}DeadLetterReason",
    },
    "dlq.error": {
        "type": "string",
        "description": (
            "A short message that names fields and error kinds, never values (no email, "
            "no name); a conflict names the user id holding the email. A field is named "
            "by the same path as in dlq.errors (e.g. time: time_format; data.email: "
            "value_error), <event> for the event as a whole."
        ),
    },
    "dlq.errors": {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"{_COMPONENTS}DeadLetterErrors"},
        "description": (
            "The same as dlq.error, as JSON for tools: a list of at most "
            f"{MOST_ERRORS} objects, never a value (see DeadLetterErrors)."
        ),
    },
    "dlq.original.topic": {"type": "string", "description": "The topic the record came from."},
    "dlq.original.partition": {**_DECIMAL, "description": "Its partition."},
    "dlq.original.offset": {**_DECIMAL, "description": "Its offset."},
    "dlq.original.timestamp": {
        **_DECIMAL,
        "description": "Its Kafka timestamp, in milliseconds since the Unix epoch.",
    },
    "dlq.consumer.group": {
        "type": "string",
        "description": "The consumer group that rejected it (KAFKA_GROUP_ID).",
    },
    "dlq.failed.at": {
        "type": "string",
        "format": "date-time",
        "description": "When it was rejected, RFC 3339 with milliseconds.",
    },
}
"""The provenance headers every dead letter carries, as JSON Schemas of their text."""

OPTIONAL_HEADERS: dict[str, dict[str, Any]] = {
    "dlq.dropped": {
        "type": "string",
        "enum": ["value", "value,key", "value,key,headers"],
        "description": (
            "Only when part of the record had to go for the dead letter to be written "
            "(too large, or refused by the broker): read the record itself at its "
            "original offset."
        ),
    },
    "dlq.value": {
        "type": "string",
        "pattern": "^null: ",
        "description": (
            "Only when the record had neither key nor value: it is sent with an empty "
            "value, since Kafka producers refuse a record with neither."
        ),
    },
    "dlq.redrive.count": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": (
            "How many times `user-events-consumer dlq redrive` re-published the record; "
            "a redrive sets it to one more, and refuses a record redriven --max-redrives "
            "times. Carried over from the record, which had it from the last redrive."
        ),
    },
    "dlq.parked.at": {
        "type": "string",
        "format": "date-time",
        "description": (
            "Only on an event that was parked (unknown_user, conflict) and that nothing "
            "healed within the consumer's PARK_TTL: when it was parked, RFC 3339."
        ),
    },
    "dlq.parked.seconds": {
        **_DECIMAL,
        "description": "With dlq.parked.at: how long it waited, in whole seconds.",
    },
}
"""The headers a dead letter carries only in the cases their descriptions name."""

ERRORS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": MOST_ERRORS,
    "description": (
        "What was wrong with the record, for tools. loc is a dotted path into the event "
        '(data.email, time, id, whichever mode the record came in; "" for the event or '
        "the record as a whole); type is pydantic's error type for a record that fails "
        "the schema, else the consumer's own kind (too_large, conflict, user_not_created, "
        "user_deleted, json_invalid, unparseable...). A conflict adds the user_id holding "
        "the email, when known. Each string is cut at 200 characters."
    ),
    "items": {
        "type": "object",
        "required": ["loc", "type"],
        "properties": {
            "loc": {"type": "string", "maxLength": 200},
            "type": {"type": "string", "minLength": 1, "maxLength": 200},
            "user_id": {"type": "string", "maxLength": 200},
        },
        "additionalProperties": False,
    },
    "examples": [
        [{"loc": "time", "type": "time_format"}, {"loc": "data.email", "type": "value_error"}],
        [{"loc": "data.email", "type": "conflict", "user_id": "u-123"}],
    ],
}
"""The JSON held by the ``dlq.errors`` header."""

REASON_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": list(REASONS),
    "description": "Why the record was rejected:\n"
    + "\n".join(f"- `{reason}`: {meaning}" for reason, meaning in REASONS.items()),
}
"""The ``dlq.reason`` header."""

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The record's own headers, unchanged (null and binary values included), followed "
        "by the dlq.* provenance headers."
    ),
    "required": list(REQUIRED_HEADERS),
    "properties": {**REQUIRED_HEADERS, **OPTIONAL_HEADERS},
    "additionalProperties": True,
}
"""A dead letter's headers."""

SCHEMAS: dict[str, dict[str, Any]] = {
    "DeadLetterHeaders": HEADERS_SCHEMA,
    "DeadLetterReason": REASON_SCHEMA,
    "DeadLetterErrors": ERRORS_SCHEMA,
}
"""The dead-letter schemas by component name."""
