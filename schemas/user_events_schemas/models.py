"""The user-events contract: CloudEvents 1.0 envelopes around user data.

Publishers import these models to build and check events; the consumer validates
every record against them. The JSON Schema files beside this module are generated
from these models (``make schemas``) and a test fails when they drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema

from user_events_schemas import patterns
from user_events_schemas.emails import Email

# The JSON Schemas say what the consumer's store adds to these types: no U+0000.
_STORED = {"pattern": patterns.NUL_FREE}
EventId = Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=_STORED)]
UserId = Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=_STORED)]
# A URI-reference (RFC 3986): we require non-empty and no whitespace, which is what
# rejects real mistakes without refusing relative references such as /signup-service.
SourceUri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        pattern=r"^\S+$",
        json_schema_extra={"pattern": patterns.NON_BLANK_NUL_FREE},
    ),
]
UserName = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=_STORED)]
Text = Annotated[str, Field(json_schema_extra=_STORED)]
MAX_SEQUENCE = 2**63 - 1
# RFC 3339's date-time, seconds and offset required ("T" and "Z" in either case).
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


class _StrictSequence:
    """A positive JSON integer, or a string of ASCII digits, up to PostgreSQL's bigint.

    Built from pydantic-core schemas rather than a Python validator, which would cost a
    call per event: pydantic's lax integers take ``true``, ``1.0`` and ``"1_000"``.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.union_schema(
            [
                core_schema.int_schema(strict=True, gt=0, le=MAX_SEQUENCE),
                core_schema.chain_schema(
                    [
                        core_schema.str_schema(pattern=r"^[0-9]+$", strict=True),
                        core_schema.int_schema(gt=0, le=MAX_SEQUENCE),
                    ]
                ),
            ],
            custom_error_type="sequence_type",
            custom_error_message=(
                "sequence must be a positive integer up to 2^63-1, "
                "as a JSON integer or a string of ASCII digits"
            ),
        )


class _Rfc3339Time:
    """An RFC 3339 string with seconds and an offset, for an instant in the years 1 to 9999
    UTC (what Python compares and the event log stores). pydantic's own datetimes also
    take numbers (Unix time) and times without seconds."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        from_text = core_schema.chain_schema(
            [
                core_schema.custom_error_schema(
                    core_schema.str_schema(pattern=RFC3339_PATTERN, strict=True),
                    custom_error_type="time_format",
                    custom_error_message=(
                        "time must be an RFC 3339 string with seconds and an offset"
                    ),
                ),
                # Past the pattern, only values can be wrong: a month 13, a 30 February, an
                # instant before year 1 or after 9999 in UTC.
                core_schema.custom_error_schema(
                    core_schema.no_info_plain_validator_function(_instant),
                    custom_error_type="time_out_of_range",
                    custom_error_message=(
                        "time is not a real date and time in the years 1 to 9999 UTC, "
                        "which the event log can store"
                    ),
                ),
            ]
        )
        # From Python (a publisher building a model), a datetime will do too, checked as
        # its RFC 3339 text.
        return core_schema.json_or_python_schema(
            json_schema=from_text,
            python_schema=core_schema.no_info_before_validator_function(_as_text, from_text),
        )


def _as_text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _instant(text: str) -> datetime:
    """The instant of an RFC 3339 text the pattern passed; ValueError if there is none.

    Parsed by ``datetime.fromisoformat``, not pydantic, for the time zone it gives: the
    standard library's. pydantic's own zone object makes every later use of the time
    dearer (Python compares it ten times slower, asyncpg encodes it at twice the cost),
    and a consumer uses each time several times. A property test holds the two parsers
    equal on every text the pattern passes."""
    # Past what fromisoformat refuses: an offset's minutes past 59, and (in newer
    # Pythons) the hour 24 as the end of a day; RFC 3339 and pydantic take neither.
    if text[-3] == ":" and text[-2] > "5":
        raise ValueError("an offset's minutes past 59")
    if text[11:13] == "24":
        raise ValueError("hour 24")
    # RFC 3339 allows a lower-case "z", which fromisoformat refuses.
    value = datetime.fromisoformat(text if text[-1] != "z" else text.upper())
    if value.year == 1 or value.year == 9999:
        # In the first or the last year, an offset can carry the instant out of range.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range in UTC") from None
    return value


# Stored as a PostgreSQL bigint: a larger one could never be stored, so it is invalid here
# rather than a failure of the batch that carries it.
EventSequence = Annotated[
    int,
    _StrictSequence(),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_SEQUENCE},
                {"type": "string", "pattern": patterns.positive_decimal_string(MAX_SEQUENCE)},
            ]
        }
    ),
]
EventTime = Annotated[
    datetime,
    _Rfc3339Time(),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": patterns.RFC3339_TIME}),
]


# The fields of ``data`` that are a person's: the consumer erases them on a delete, and
# writes them nowhere an erasure cannot reach (its docs/privacy.md).
PERSONAL_FIELDS = ("email", "name")


class _Data(BaseModel):
    # Tolerant reader: fields a newer publisher adds are ignored, not rejected.
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserCreatedData(_Data):
    """Data of ``user.created``: the new user's email and display name."""

    model_config = ConfigDict(json_schema_extra={"$anchor": "user.created.data"})

    email: Email
    name: UserName


class UserUpdatedData(_Data):
    """Data of ``user.updated``: the fields that changed; at least one."""

    model_config = ConfigDict(
        json_schema_extra={
            "$anchor": "user.updated.data",
            "anyOf": [
                {"required": [field], "properties": {field: {"type": "string"}}}
                for field in ("email", "name")
            ],
        }
    )

    email: Email | None = None
    name: UserName | None = None

    @model_validator(mode="after")
    def _at_least_one_field(self) -> UserUpdatedData:
        if self.email is None and self.name is None:
            raise ValueError("user.updated needs at least one of email, name")
        return self


class UserDeletedData(_Data):
    """Data of ``user.deleted``: absent or empty."""

    model_config = ConfigDict(json_schema_extra={"$anchor": "user.deleted.data"})


class _CloudEvent(BaseModel):
    """CloudEvents 1.0 context attributes shared by every user event."""

    # Extension attributes are allowed by CloudEvents; we ignore the ones we do not know.
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: EventId
    source: SourceUri
    subject: UserId = Field(description="The user id.")
    time: EventTime = Field(description="When it happened, RFC 3339 with seconds and an offset.")
    sequence: EventSequence | None = Field(
        default=None,
        description="The publisher's per-user version: a JSON integer or a string of ASCII digits.",
    )
    datacontenttype: Text | None = None
    dataschema: Text | None = Field(
        default=None,
        description="The schema of data, e.g. "
        "https://schemas.user-events.example/user.created.schema.json#user.created.data",
    )

    @property
    def user_id(self) -> str:
        return self.subject


class UserCreated(_CloudEvent):
    """A user was created."""

    type: Literal["user.created"]
    data: UserCreatedData


class UserUpdated(_CloudEvent):
    """Some of a user's fields changed."""

    type: Literal["user.updated"]
    data: UserUpdatedData


class UserDeleted(_CloudEvent):
    """A user was deleted."""

    type: Literal["user.deleted"]
    data: UserDeletedData | None = None


AnyUserEvent = UserCreated | UserUpdated | UserDeleted
UserEvent = Annotated[AnyUserEvent, Field(discriminator="type")]
"""Any user event, discriminated by ``type``."""

# Each event type's model, keyed by its ``type``, from the union above: the one list of the
# types. A new type is a model and its place in ``AnyUserEvent``; these follow.
MODELS: dict[str, type[_CloudEvent]] = {
    get_args(model.model_fields["type"].annotation)[0]: model for model in get_args(AnyUserEvent)
}
EVENT_TYPES: tuple[str, ...] = tuple(MODELS)
