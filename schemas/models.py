"""The user-events contract: CloudEvents 1.0 envelopes around user data.

Publishers import these models to build and check events; the consumer validates
every record against them. The JSON Schema files beside this module are generated
from these models (``python -m schemas.generate``) and a test fails when they drift.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from schemas.emails import Email

EVENT_TYPES = ("user.created", "user.updated", "user.deleted")

EventId = Annotated[str, Field(min_length=1, max_length=128)]
UserId = Annotated[str, Field(min_length=1, max_length=128)]
# A URI-reference (RFC 3986): we require non-empty and no whitespace, which is what
# rejects real mistakes without refusing relative references such as /signup-service.
SourceUri = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$")]
UserName = Annotated[str, Field(min_length=1, max_length=200)]
# Stored as a PostgreSQL bigint: a larger one could never be stored, so it is invalid here
# rather than a failure of the batch that carries it.
EventSequence = Annotated[int, Field(gt=0, le=2**63 - 1)]


class _Data(BaseModel):
    # Tolerant reader: fields a newer publisher adds are ignored, not rejected.
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserCreatedData(_Data):
    """Data of ``user.created``: the new user's email and display name."""

    email: Email
    name: UserName


class UserUpdatedData(_Data):
    """Data of ``user.updated``: the fields that changed; at least one."""

    email: Email | None = None
    name: UserName | None = None

    @model_validator(mode="after")
    def _at_least_one_field(self) -> UserUpdatedData:
        if self.email is None and self.name is None:
            raise ValueError("user.updated needs at least one of email, name")
        return self


class UserDeletedData(_Data):
    """Data of ``user.deleted``: absent or empty."""


class _CloudEvent(BaseModel):
    """CloudEvents 1.0 context attributes shared by every user event."""

    # Extension attributes are allowed by CloudEvents; we ignore the ones we do not know.
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: EventId
    source: SourceUri
    subject: UserId = Field(description="The user id.")
    time: AwareDatetime = Field(description="When it happened, RFC 3339.")
    sequence: EventSequence | None = Field(
        default=None,
        description="The publisher's per-user version; a JSON number or a decimal string.",
    )
    datacontenttype: str | None = None
    dataschema: str | None = None

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


UserEvent = Annotated[UserCreated | UserUpdated | UserDeleted, Field(discriminator="type")]
"""Any user event, discriminated by ``type``."""

MODELS: dict[str, type[_CloudEvent]] = {
    "user.created": UserCreated,
    "user.updated": UserUpdated,
    "user.deleted": UserDeleted,
}
