"""The user-events contract, importable on its own by publishers.

>>> from user_events_schemas import build_event, structured_record
>>> event = build_event("user.created", "u-1", {"email": "a@example.com", "name": "Ada"},
...                     source="/signup-service")

What ``__all__`` names is the package's public face, kept compatible within a minor
version: the models, the record builders, the verdict on a record (``decode_structured``
for the consumer's decoder, ``verdict`` for a publisher's check), the rejection
vocabulary and the names records carry on the wire. The modules themselves (``models``,
``builder``, ``rejections``, ``verdicts``, ``validate``, ``cli``, ``emails``,
``patterns``, ``wire``) are internal: import from the package, not from them.
"""

from user_events_schemas.builder import KafkaHeaders, binary_record, build_event, structured_record
from user_events_schemas.models import (
    EVENT_TYPES,
    MAX_SEQUENCE,
    PERSONAL_FIELDS,
    AnyUserEvent,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
    UserEvent,
    UserUpdated,
    UserUpdatedData,
)
from user_events_schemas.rejections import FieldError, Reason, Rejection, rejection_from
from user_events_schemas.validate import verdict
from user_events_schemas.verdicts import decode_structured, is_storable, validate_python
from user_events_schemas.wire import (
    BINARY_PREFIX,
    DLQ_CONSUMER_GROUP,
    DLQ_DROPPED,
    DLQ_ERROR,
    DLQ_ERRORS,
    DLQ_FAILED_AT,
    DLQ_MOST_ERRORS,
    DLQ_OCCASIONAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_ORIGINAL_TOPIC,
    DLQ_PARKED_AT,
    DLQ_PARKED_SECONDS,
    DLQ_PREFIX,
    DLQ_PROVENANCE_HEADERS,
    DLQ_REASON,
    DLQ_REDRIVE_COUNT,
    DLQ_VALUE,
    SPECVERSION_HEADER,
)

__all__ = [
    "BINARY_PREFIX",
    "DLQ_CONSUMER_GROUP",
    "DLQ_DROPPED",
    "DLQ_ERROR",
    "DLQ_ERRORS",
    "DLQ_FAILED_AT",
    "DLQ_MOST_ERRORS",
    "DLQ_OCCASIONAL_HEADERS",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TIMESTAMP",
    "DLQ_ORIGINAL_TOPIC",
    "DLQ_PARKED_AT",
    "DLQ_PARKED_SECONDS",
    "DLQ_PREFIX",
    "DLQ_PROVENANCE_HEADERS",
    "DLQ_REASON",
    "DLQ_REDRIVE_COUNT",
    "DLQ_VALUE",
    "EVENT_TYPES",
    "MAX_SEQUENCE",
    "PERSONAL_FIELDS",
    "SPECVERSION_HEADER",
    "AnyUserEvent",
    "FieldError",
    "KafkaHeaders",
    "Reason",
    "Rejection",
    "UserCreated",
    "UserCreatedData",
    "UserDeleted",
    "UserDeletedData",
    "UserEvent",
    "UserUpdated",
    "UserUpdatedData",
    "binary_record",
    "build_event",
    "decode_structured",
    "is_storable",
    "rejection_from",
    "structured_record",
    "validate_python",
    "verdict",
]
