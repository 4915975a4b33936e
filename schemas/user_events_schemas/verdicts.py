"""What the consumer makes of a structured-mode record's value: the event, or the
rejection it dead-letters the record with. Pure.

The consumer's decoder calls ``decode_structured`` for every structured-mode record, and
the publishers' validator for every event it checks: one set of rules for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import from_json

from user_events_schemas.models import AnyUserEvent, UserEvent
from user_events_schemas.rejections import FieldError, Reason, Rejection, rejection_from

# Values (ids, times, emails, names) rarely repeat, so jiter's cache of parsed strings
# costs more than it saves for them; keys repeat in every event.
_adapter: TypeAdapter[AnyUserEvent] = TypeAdapter(
    UserEvent, config=ConfigDict(cache_strings="keys")
)
# The adapter's validator, called directly: TypeAdapter's own Python layer around it cost
# 0.4 us a record, a tenth of decoding.
validate_json: Callable[[bytes], AnyUserEvent] = _adapter.validator.validate_json
validate_python: Callable[[dict[str, Any]], AnyUserEvent] = _adapter.validator.validate_python

_N, _I = ord("N"), ord("I")
NULL_VALUE = Rejection(Reason.UNDECODABLE, "null value", errors=(FieldError("", "null_value"),))
NON_FINITE = Rejection(
    Reason.UNDECODABLE,
    "value is not JSON: NaN or Infinity",
    errors=(FieldError("", "non_finite_number"),),
)
NOT_STORABLE = Rejection(
    Reason.INVALID,
    "not storable: a string holds U+0000, which PostgreSQL refuses",
    errors=(FieldError("", "not_storable"),),
)


def decode_structured(value: bytes | None) -> AnyUserEvent | Rejection:
    """The event in a structured-mode value (the whole CloudEvent as JSON), or why not.

    JSON is RFC 8259 JSON: NaN and Infinity make a value ``undecodable``, as do invalid
    UTF-8 and lone surrogates (which the parser refuses)."""
    if value is None:
        return NULL_VALUE
    # A byte looked up as an int costs a tenth of a bytes lookup; only a value holding an
    # N or an I is searched further.
    if (_N in value or _I in value) and has_non_finite_number(value):
        return NON_FINITE
    try:
        return validate_json(value)
    except ValidationError as exc:
        return rejection_from(exc)


def has_non_finite_number(value: bytes) -> bool:
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


def is_storable(event: AnyUserEvent) -> bool:
    """Whether PostgreSQL can store the event: its text and jsonb hold no U+0000.

    The consumer learns it from PostgreSQL when it writes the event, and dead-letters it
    then (``invalid``, ``not_storable``); a validator has to say it beforehand."""
    data = () if event.data is None else tuple(event.data.__dict__.values())
    return not any(
        isinstance(value, str) and "\x00" in value for value in (*event.__dict__.values(), *data)
    )
