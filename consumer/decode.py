"""Bytes and headers of a Kafka record -> a validated user event, or a Rejection. Pure.

Both CloudEvents Kafka bindings are accepted: structured mode (the value is the whole
event as JSON) and binary mode (``ce_*`` headers carry the attributes, the value is
``data``). Error messages name fields and error kinds only, never input values, so a
dead letter's ``dlq.error`` never carries an email or a name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from consumer.records import KafkaRecord, Reason, Rejection
from schemas.models import UserCreated, UserDeleted, UserEvent, UserUpdated

AnyUserEvent = UserCreated | UserUpdated | UserDeleted

_adapter: TypeAdapter[AnyUserEvent] = TypeAdapter(UserEvent)
log = logging.getLogger(__name__)

_BINARY_PREFIX = "ce_"
_UNDECODABLE_ERRORS = {
    "json_invalid",
    "json_type",
    "dict_type",
    "model_attributes_type",
    "model_type",
}
_UNKNOWN_TYPE_ERRORS = {"union_tag_invalid"}


def decode(record: KafkaRecord, max_bytes: int) -> AnyUserEvent | Rejection:
    """Decode and validate one record against the contract."""
    size = len(record.value or b"")
    binary = False
    # One plain loop for both questions: this runs once per record.
    for name, raw in record.headers:
        size += len(name) + (len(raw) if raw else 0)
        binary = binary or name.startswith(_BINARY_PREFIX)
    if size > max_bytes:
        return Rejection(Reason.TOO_LARGE, f"record is {size} bytes, over the {max_bytes} limit")
    if binary:
        return _decode_binary(record)
    return _decode_structured(record)


def decode_all(
    records: Iterable[KafkaRecord], max_bytes: int
) -> list[tuple[KafkaRecord, AnyUserEvent | Rejection]]:
    """Decode a batch in one tight loop, keeping each record beside its verdict."""
    return [(record, _decode_or_reject(record, max_bytes)) for record in records]


def _decode_or_reject(record: KafkaRecord, max_bytes: int) -> AnyUserEvent | Rejection:
    try:
        return decode(record, max_bytes)
    except Exception as exc:
        # A record the decoder itself fails on (a bug here or in a library) would fail
        # its batch on every retry and stop the partition: dead-letter it, and say so.
        log.error(
            "the decoder failed on a record; it is dead-lettered",
            extra={**record.where(), "error": type(exc).__name__},
        )
        return Rejection(Reason.UNDECODABLE, f"the decoder failed: {type(exc).__name__}")


def event_payload(record: KafkaRecord, event: AnyUserEvent) -> str:
    """The JSON text stored in the event log: the structured event as published."""
    if record.value is not None and not _is_binary(record):
        return record.value.decode()
    return event.model_dump_json(exclude_none=True)


def _is_binary(record: KafkaRecord) -> bool:
    return bool(record.headers) and any(
        name.startswith(_BINARY_PREFIX) for name, _ in record.headers
    )


def _decode_structured(record: KafkaRecord) -> AnyUserEvent | Rejection:
    if record.value is None:
        return Rejection(Reason.UNDECODABLE, "null value")
    try:
        return _adapter.validate_json(record.value)
    except ValidationError as exc:
        return _rejection_from(exc)


def _decode_binary(record: KafkaRecord) -> AnyUserEvent | Rejection:
    attributes: dict[str, Any] = {}
    try:
        for name, raw in record.headers:
            if name.startswith(_BINARY_PREFIX) and raw is not None:
                attributes[name[len(_BINARY_PREFIX) :]] = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(Reason.UNDECODABLE, "a ce_ header is not UTF-8")
    if record.value:
        try:
            attributes["data"] = json.loads(record.value)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return Rejection(Reason.UNDECODABLE, "binary-mode value is not JSON")
        if not isinstance(attributes["data"], dict):
            return Rejection(Reason.UNDECODABLE, "binary-mode value is not a JSON object")
    try:
        return _adapter.validate_python(attributes)
    except ValidationError as exc:
        return _rejection_from(exc)


def _rejection_from(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    kinds = {error["type"] for error in errors}
    if kinds & _UNDECODABLE_ERRORS and all(not error["loc"] for error in errors):
        return Rejection(Reason.UNDECODABLE, "value is not a JSON object")
    if kinds & _UNKNOWN_TYPE_ERRORS:
        return Rejection(Reason.UNKNOWN_TYPE, "type is not one of the user event types")
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<event>'}: {error['type']}"
        for error in errors[:5]
    )
    return Rejection(Reason.INVALID, summary)
