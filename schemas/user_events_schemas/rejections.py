"""Why the consumer refuses a record, in the words of its dead letters.

``Reason`` is the ``dlq.reason`` header, ``FieldError`` one entry of ``dlq.errors``, and
``rejection_from`` turns pydantic's validation errors into both, as the consumer does
for every record that fails the contract and as the validator reports it to publishers.
Messages and errors name fields and error kinds only, never input values, so a dead
letter never carries an email or a name.

One vocabulary for where a fault is: ``field_path`` is the rule, a dotted path into the
event (``time``, ``data.email``, ``id``; ``""`` for the event as a whole) whichever mode
the record came in, without pydantic's tagged-union segment (``user.created``). The
``dlq.error`` message (``describe``), the ``dlq.errors`` entries and the validator's
report all name a field by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import NamedTuple

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from user_events_schemas.models import MODELS


class Reason(StrEnum):
    """Why a record is poison: the ``dlq.reason`` header and the metric label, each with
    what it means (``meaning``, as the AsyncAPI document explains it). The contract
    decides the first three; the consumer's state and limits the others."""

    meaning: str

    # Called only to make the members: ``Reason("invalid")`` looks a member up (the
    # default lets type checkers see that call).
    def __new__(cls, value: str, meaning: str = "") -> Reason:
        if not meaning:
            raise ValueError(f"the reason {value!r} says nothing of what it means")
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    UNDECODABLE = (
        "undecodable",
        "null value, not UTF-8, not JSON, not an object, NaN or Infinity",
    )
    INVALID = ("invalid", "fails the schema")
    UNKNOWN_TYPE = (
        "unknown_type",
        "a type other than user.created, user.updated, user.deleted",
    )
    CONFLICT = ("conflict", "the email belongs to another active user")
    UNKNOWN_USER = (
        "unknown_user",
        "an update for a user id never created (after waiting PARK_TTL for it)",
    )
    TOO_LARGE = (
        "too_large",
        "key, value and headers together over the consumer's MAX_MESSAGE_BYTES",
    )
    USER_DELETED = ("user_deleted", "an update for a deleted user, newer than its delete")


class FieldError(NamedTuple):
    """One thing wrong with a record: where (a dotted path into the event, ``""`` for the
    event or record as a whole) and what (pydantic's error type, or the consumer's own
    kind: ``too_large``, ``conflict``...). Never an input value. ``user_id``: for a
    ``conflict``, the user who holds the email, when known."""

    loc: str
    type: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A poison verdict: the reason and a short message free of the payload's personal data.

    ``errors``: the same, structured (the ``dlq.errors`` header); empty where the
    rejection site has nothing more to say than its reason. ``unread``: the consumer's
    Kafka client could not parse the record at all, so its dead letter can hold nothing
    of it but where it was."""

    reason: Reason
    error: str
    unread: bool = False
    errors: tuple[FieldError, ...] = ()


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
_UNKNOWN_TYPE = (FieldError("type", "union_tag_invalid"),)
MOST_DESCRIBED = 5
"""The most field errors a ``dlq.error`` message names (``dlq.errors`` has them all)."""
WHOLE_EVENT = "<event>"
"""How a message names the path ``""``: the event, or the record, as a whole."""


def rejection_from(exc: ValidationError) -> Rejection:
    """The rejection of a value that fails the contract: ``undecodable`` when it is not a
    JSON object at all, ``unknown_type`` for a type the contract does not know, else
    ``invalid`` with every field error."""
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
    found = field_errors(errors)
    return Rejection(Reason.INVALID, describe(found), errors=found)


def field_path(loc: Sequence[str | int], kind: str) -> str:
    """The public path of the field a pydantic error with location ``loc`` and type
    ``kind`` is about: the dotted path into the event, without the discriminated union's
    type tag (``("user.created", "data", "email")`` is ``data.email``); the same in both
    modes, since a binary-mode record is validated as the same attributes. The
    discriminator's own errors (a type missing or unknown) are about ``type``; ``""`` is
    the event or the record as a whole."""
    if loc and loc[0] in _TYPE_TAGS:
        loc = loc[1:]
    path = ".".join(str(part) for part in loc)
    return path or ("type" if kind.startswith("union_tag") else "")


def field_errors(errors: Iterable[ErrorDetails]) -> tuple[FieldError, ...]:
    """pydantic's errors as paths into the event (``field_path``) and error types, never
    an input value (the errors must come without their input)."""
    return tuple(
        FieldError(field_path(error["loc"], error["type"]), error["type"]) for error in errors
    )


def describe(errors: Iterable[FieldError], most: int = MOST_DESCRIBED) -> str:
    """The ``dlq.error`` message for field errors: ``time: time_format; data.email:
    value_error``, the first ``most`` of them, each at its ``field_path`` (``<event>``
    for the event as a whole). Paths and kinds only, never a value."""
    return "; ".join(f"{error.loc or WHOLE_EVENT}: {error.type}" for error in islice(errors, most))
