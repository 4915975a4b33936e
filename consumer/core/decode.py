"""Bytes and headers of a Kafka record -> a validated user event, or a Rejection. Pure.

Both CloudEvents Kafka bindings are accepted: structured mode (the value is the whole
event as JSON) and binary mode (``ce_*`` headers carry the attributes, the value is
``data``), told apart as the binding says (see ``decode``). Error messages name fields
and error kinds only, never input values, so a dead letter's ``dlq.error`` never
carries an email or a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, from_json
from user_events_schemas.models import MODELS, UserCreated, UserDeleted, UserEvent, UserUpdated

from consumer.core.records import FieldError, KafkaRecord, Reason, Rejection

AnyUserEvent = UserCreated | UserUpdated | UserDeleted

# Values (ids, times, emails, names) rarely repeat, so jiter's cache of parsed strings
# costs more than it saves for them; keys repeat in every event.
_adapter: TypeAdapter[AnyUserEvent] = TypeAdapter(
    UserEvent, config=ConfigDict(cache_strings="keys")
)
# The adapter's validator, called directly: TypeAdapter's own Python layer around it cost
# 0.4 us a record, a tenth of decoding.
_validate_json: Callable[[bytes], AnyUserEvent] = _adapter.validator.validate_json
_validate_python: Callable[[dict[str, Any]], AnyUserEvent] = _adapter.validator.validate_python
log = logging.getLogger(__name__)

_BINARY_PREFIX = "ce_"
_STRUCTURED_CONTENT_TYPE = b"application/cloudevents"
_OPTIONAL_ATTRIBUTES = ("sequence", "datacontenttype", "dataschema")
_NON_FINITE = "value is not JSON: NaN or Infinity"
_N, _I = ord("N"), ord("I")
_UNDECODABLE_ERRORS = {
    "json_invalid",
    "json_type",
    "dict_type",
    "model_attributes_type",
    "model_type",
}
_UNKNOWN_TYPE_ERRORS = {"union_tag_invalid"}
# A discriminated union's errors are located under the event's type ("user.created",
# "data", "email"): the path into the event starts after it.
_TYPE_TAGS = frozenset(MODELS)
_TOO_LARGE = (FieldError("", "too_large"),)
_NULL_VALUE = (FieldError("", "null_value"),)
_NON_FINITE_NUMBER = (FieldError("", "non_finite_number"),)
_DATA_NOT_JSON = (FieldError("data", "json_invalid"),)
_DATA_NOT_OBJECT = (FieldError("data", "dict_type"),)
_UNKNOWN_TYPE = (FieldError("type", "union_tag_invalid"),)
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
        if name == "ce_specversion":
            has_specversion = True
    if size > max_bytes:
        return Rejection(
            Reason.TOO_LARGE,
            f"record is {size} bytes, over the {max_bytes} limit",
            errors=_TOO_LARGE,
        )
    if is_binary_mode(content_type, has_specversion):
        return _decode_binary(record)
    return _decode_structured(value)


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
    valid event unstorable. Absent optional attributes and fields are left out."""
    attributes = dict(event.__dict__)
    for name in _OPTIONAL_ATTRIBUTES:
        if attributes[name] is None:
            del attributes[name]
    data = attributes["data"]
    if data is None:
        del attributes["data"]
    else:
        fields = data.__dict__
        attributes["data"] = (
            fields
            if None not in fields.values()
            else {k: v for k, v in fields.items() if v is not None}
        )
    return orjson.dumps(attributes).decode()


def _decode_structured(value: bytes | None) -> AnyUserEvent | Rejection:
    if value is None:
        return Rejection(Reason.UNDECODABLE, "null value", errors=_NULL_VALUE)
    # A byte looked up as an int costs a tenth of a bytes lookup; only a value holding an
    # N or an I is searched further.
    if (_N in value or _I in value) and _has_non_finite_number(value):
        return Rejection(Reason.UNDECODABLE, _NON_FINITE, errors=_NON_FINITE_NUMBER)
    try:
        return _validate_json(value)
    except ValidationError as exc:
        return _rejection_from(exc)


def _has_non_finite_number(value: bytes) -> bool:
    """NaN or Infinity outside a string: JSON (RFC 8259) has neither."""
    if b"NaN" not in value and b"Infinity" not in value:
        return False
    try:
        from_json(value, allow_inf_nan=False)
    except ValueError:
        try:
            from_json(value)
        except ValueError:
            return False  # not JSON at all: validation says so
        return True
    return False


def _decode_binary(record: KafkaRecord) -> AnyUserEvent | Rejection:
    attributes: dict[str, Any] = {}
    try:
        for name, raw in record.headers:
            if name.startswith(_BINARY_PREFIX) and raw is not None:
                attributes[name[len(_BINARY_PREFIX) :]] = raw.decode("utf-8")
    except UnicodeDecodeError:
        attribute = name[len(_BINARY_PREFIX) :]
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
        return _validate_python(attributes)
    except ValidationError as exc:
        return _rejection_from(exc)


def _rejection_from(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    kinds = {error["type"] for error in errors}
    if kinds & _UNDECODABLE_ERRORS and all(not error["loc"] for error in errors):
        return Rejection(
            Reason.UNDECODABLE, "value is not a JSON object", errors=field_errors(errors)
        )
    if kinds & _UNKNOWN_TYPE_ERRORS:
        return Rejection(
            Reason.UNKNOWN_TYPE, "type is not one of the user event types", errors=_UNKNOWN_TYPE
        )
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<event>'}: {error['type']}"
        for error in errors[:5]
    )
    return Rejection(Reason.INVALID, summary, errors=field_errors(errors))


def field_errors(errors: Iterable[ErrorDetails]) -> tuple[FieldError, ...]:
    """pydantic's errors as paths into the event and error types, without the union's
    type tag, and never an input value (the errors must come without their input)."""
    found = []
    for error in errors:
        loc = error["loc"]
        if loc and loc[0] in _TYPE_TAGS:
            loc = loc[1:]
        kind = error["type"]
        # The discriminator's own errors are about the ``type`` attribute.
        path = ".".join(str(part) for part in loc) or (
            "type" if kind.startswith("union_tag") else ""
        )
        found.append(FieldError(path, kind))
    return tuple(found)
