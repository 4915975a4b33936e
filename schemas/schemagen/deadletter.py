"""The dead-letter topic's side of the AsyncAPI document: its ``dlq.*`` headers and the
reasons, as JSON Schemas for the document's ``components/schemas`` (``SCHEMAS``), where
they refer to each other. The names and the reasons themselves are the contract's
(``user_events_schemas``); this only says what they mean.
"""

from __future__ import annotations

from typing import Any

from user_events_schemas import (
    DLQ_CONSUMER_GROUP,
    DLQ_DROPPED,
    DLQ_ERROR,
    DLQ_ERRORS,
    DLQ_FAILED_AT,
    DLQ_MOST_ERRORS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_ORIGINAL_TOPIC,
    DLQ_PARKED_AT,
    DLQ_PARKED_SECONDS,
    DLQ_REASON,
    DLQ_REDRIVE_COUNT,
    DLQ_VALUE,
    Reason,
)

_DECIMAL = {"type": "string", "pattern": "^-?[0-9]+$"}
_COMPONENTS = "#/components/schemas/"

REQUIRED_HEADERS: dict[str, dict[str, Any]] = {
    DLQ_REASON: {
        "description": "Why the record was rejected.",
        "$ref": f"{_COMPONENTS}DeadLetterReason",
    },
    DLQ_ERROR: {
        "type": "string",
        "description": (
            "A short message that names fields and error kinds, never values (no email, "
            "no name); a conflict names the user id holding the email. A field is named "
            "by the same path as in dlq.errors (e.g. time: time_format; data.email: "
            "value_error), <event> for the event as a whole."
        ),
    },
    DLQ_ERRORS: {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"{_COMPONENTS}DeadLetterErrors"},
        "description": (
            "The same as dlq.error, as JSON for tools: a list of at most "
            f"{DLQ_MOST_ERRORS} objects, never a value (see DeadLetterErrors)."
        ),
    },
    DLQ_ORIGINAL_TOPIC: {"type": "string", "description": "The topic the record came from."},
    DLQ_ORIGINAL_PARTITION: {**_DECIMAL, "description": "Its partition."},
    DLQ_ORIGINAL_OFFSET: {**_DECIMAL, "description": "Its offset."},
    DLQ_ORIGINAL_TIMESTAMP: {
        **_DECIMAL,
        "description": "Its Kafka timestamp, in milliseconds since the Unix epoch.",
    },
    DLQ_CONSUMER_GROUP: {
        "type": "string",
        "description": "The consumer group that rejected it (KAFKA_GROUP_ID).",
    },
    DLQ_FAILED_AT: {
        "type": "string",
        "format": "date-time",
        "description": "When it was rejected, RFC 3339 with milliseconds.",
    },
}
"""The provenance headers every dead letter carries, as JSON Schemas of their text."""

OPTIONAL_HEADERS: dict[str, dict[str, Any]] = {
    DLQ_DROPPED: {
        "type": "string",
        "enum": ["value", "value,key", "value,key,headers"],
        "description": (
            "Only when part of the record had to go for the dead letter to be written "
            "(too large, or refused by the broker): read the record itself at its "
            "original offset."
        ),
    },
    DLQ_VALUE: {
        "type": "string",
        "pattern": "^null: ",
        "description": (
            "Only when the record had neither key nor value: it is sent with an empty "
            "value, since Kafka producers refuse a record with neither."
        ),
    },
    DLQ_REDRIVE_COUNT: {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": (
            "How many times `user-events-consumer dlq redrive` re-published the record; "
            "a redrive sets it to one more, and refuses a record redriven --max-redrives "
            "times. Carried over from the record, which had it from the last redrive."
        ),
    },
    DLQ_PARKED_AT: {
        "type": "string",
        "format": "date-time",
        "description": (
            "Only on an event that was parked (unknown_user, conflict) and that nothing "
            "healed within the consumer's PARK_TTL: when it was parked, RFC 3339."
        ),
    },
    DLQ_PARKED_SECONDS: {
        **_DECIMAL,
        "description": "With dlq.parked.at: how long it waited, in whole seconds.",
    },
}
"""The headers a dead letter carries only in the cases their descriptions name."""

ERRORS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": DLQ_MOST_ERRORS,
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
    "enum": [str(reason) for reason in Reason],
    "description": "Why the record was rejected:\n"
    + "\n".join(f"- `{reason}`: {reason.meaning}" for reason in Reason),
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
