"""The user-events contract, importable on its own by publishers.

>>> from user_events_schemas import build_event, structured_record
>>> event = build_event("user.created", "u-1", {"email": "a@example.com", "name": "Ada"},
...                     source="/signup-service")
"""

from user_events_schemas.builder import binary_record, build_event, structured_record
from user_events_schemas.models import (
    EVENT_TYPES,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
    UserEvent,
    UserUpdated,
    UserUpdatedData,
)

__all__ = [
    "EVENT_TYPES",
    "UserCreated",
    "UserCreatedData",
    "UserDeleted",
    "UserDeletedData",
    "UserEvent",
    "UserUpdated",
    "UserUpdatedData",
    "binary_record",
    "build_event",
    "structured_record",
]
