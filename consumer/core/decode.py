"""Bytes and headers of a Kafka record -> a validated user event, or a Rejection. Pure.

Both CloudEvents Kafka bindings are accepted: structured mode (the value is the whole
event as JSON) and binary mode (``ce_*`` headers carry the attributes, the value is
``data``), told apart as the binding says (see ``decode``). Error messages name fields
and error kinds only, never input values, so a dead letter's ``dlq.error`` never
carries an email or a name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import from_json
from user_events_schemas import (
    BINARY_PREFIX,
    PERSONAL_FIELDS,
    SPECVERSION_HEADER,
    decode_structured,
    rejection_from,
    validate_python,
)
from user_events_schemas import AnyUserEvent as AnyUserEvent

from consumer.core.records import FieldError, KafkaRecord, Reason, Rejection

log = logging.getLogger(__name__)

_PERSONAL = frozenset(PERSONAL_FIELDS)

_STRUCTURED_CONTENT_TYPE = b"application/cloudevents"
_OPTIONAL_ATTRIBUTES = ("sequence", "datacontenttype", "dataschema")
_TOO_LARGE = (FieldError("", "too_large"),)
_DATA_NOT_JSON = (FieldError("data", "json_invalid"),)
_DATA_NOT_OBJECT = (FieldError("data", "dict_type"),)
_DECODER_ERROR = (FieldError("", "decoder_error"),)


def decode(record: KafkaRecord, max_bytes: int) -> AnyUserEvent | Rejection:
    """Decode and validate one record against the contract.

    The mode follows the CloudEvents Kafka protocol binding: a ``content-type`` starting
    with ``application/cloudevents`` means structured, whatever the other headers; else a
    ``ce_specversion`` header means binary; else structured.
    """
    value = record.value
    size = len(record.key or b"") + len(value or b"")
    content_type: bytes | None = None
    has_specversion = False
    # One plain loop for every header question: this runs once per record.
    for name, raw in record.headers:
        if raw is not None:
            size += len(raw)
            if name == "content-type":
                content_type = raw
        size += len(name) if name.isascii() else len(name.encode())
        if name == SPECVERSION_HEADER:
            has_specversion = True
    if size > max_bytes:
        return Rejection(
            Reason.TOO_LARGE,
            f"record is {size} bytes, over the {max_bytes} limit",
            errors=_TOO_LARGE,
        )
    if is_binary_mode(content_type, has_specversion):
        return _decode_binary(record)
    # The structured-mode rules are the contract package's, shared with its validator.
    return decode_structured(value)


def is_binary_mode(content_type: bytes | None, has_specversion: bool) -> bool:
    """The binding's rule, given the ``content-type`` header and whether there is a
    ``ce_specversion`` one: binary unless the content type says structured."""
    return has_specversion and not (
        content_type is not None and content_type[:23].lower() == _STRUCTURED_CONTENT_TYPE
    )


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
        return Rejection(
            Reason.UNDECODABLE,
            f"the decoder failed: {type(exc).__name__}",
            errors=_DECODER_ERROR,
        )


def stored_payload(event: AnyUserEvent) -> str:
    """The JSON stored in the event log: the event as the consumer read it, whatever its
    mode. Only the contract's attributes and ``data`` fields, never what the consumer
    ignores (extension attributes, unknown ``data`` fields): those can hold what
    PostgreSQL's jsonb refuses (``\\u0000``, numbers past its range), and must not make a
    valid event unstorable. Absent optional attributes and fields are left out.

    The personal values are never in it: each is null (its key stays, to say the event
    carried it). The log keeps them apart, sealed (``consumer.core.sealing``)."""
    return stored_parts(event)[0]


def stored_parts(event: AnyUserEvent) -> tuple[str, dict[str, Any] | None]:
    """``stored_payload``, and the personal values it leaves out (None: none), in one
    pass: this runs once per logged event."""
    attributes = dict(event.__dict__)
    for name in _OPTIONAL_ATTRIBUTES:
        if attributes[name] is None:
            del attributes[name]
    data = attributes["data"]
    if data is None:
        del attributes["data"]
        return orjson.dumps(attributes).decode(), None
    fields = data.__dict__
    if None in fields.values():
        fields = {k: v for k, v in fields.items() if v is not None}
    if fields.keys() <= _PERSONAL:  # every field the contract has today: one step
        personal = fields
        attributes["data"] = dict.fromkeys(fields)
    else:
        personal = {k: v for k, v in fields.items() if k in _PERSONAL}
        attributes["data"] = {k: (None if k in _PERSONAL else v) for k, v in fields.items()}
    return orjson.dumps(attributes).decode(), personal or None


def _decode_binary(record: KafkaRecord) -> AnyUserEvent | Rejection:
    attributes: dict[str, Any] = {}
    try:
        for name, raw in record.headers:
            if name.startswith(BINARY_PREFIX) and raw is not None:
                attributes[name[len(BINARY_PREFIX) :]] = raw.decode("utf-8")
    except UnicodeDecodeError:
        attribute = name[len(BINARY_PREFIX) :]
        return Rejection(
            Reason.UNDECODABLE,
            "a ce_ header is not UTF-8",
            errors=(FieldError(attribute, "not_utf8"),),
        )
    if record.value:
        # The same JSON parser as structured mode: strict UTF-8, no lone surrogates (which
        # no PostgreSQL text can hold), no NaN or Infinity, nesting bounded.
        try:
            attributes["data"] = from_json(record.value, allow_inf_nan=False)
        except ValueError:
            return Rejection(
                Reason.UNDECODABLE, "binary-mode value is not JSON", errors=_DATA_NOT_JSON
            )
        if not isinstance(attributes["data"], dict):
            return Rejection(
                Reason.UNDECODABLE,
                "binary-mode value is not a JSON object",
                errors=_DATA_NOT_OBJECT,
            )
    try:
        return validate_python(attributes)
    except ValidationError as exc:
        return rejection_from(exc)
