"""The names records carry on the wire, each defined once: the binary-mode ``ce_*`` header
prefix and the dead-letter topic's ``dlq.*`` headers.

The consumer writes and reads them, its tools read them, and the AsyncAPI document
describes them; all three take them from here.
"""

from __future__ import annotations

BINARY_PREFIX = "ce_"
"""A binary-mode record carries each CloudEvents attribute as a header: this, then the
attribute's name (``ce_specversion``, ``ce_id``, ``ce_source``...)."""
SPECVERSION_HEADER = BINARY_PREFIX + "specversion"
"""The header that makes a record binary-mode, unless its content type says structured."""

DLQ_PREFIX = "dlq."
"""Every header the consumer adds to a dead letter starts with this."""

DLQ_REASON = "dlq.reason"
"""Why the record was rejected: a ``Reason``."""
DLQ_ERROR = "dlq.error"
"""A short message naming fields and error kinds, never values."""
DLQ_ERRORS = "dlq.errors"
"""The same as ``dlq.error``, as JSON: a list of at most ``DLQ_MOST_ERRORS`` objects."""
DLQ_ORIGINAL_TOPIC = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION = "dlq.original.partition"
DLQ_ORIGINAL_OFFSET = "dlq.original.offset"
DLQ_ORIGINAL_TIMESTAMP = "dlq.original.timestamp"
DLQ_CONSUMER_GROUP = "dlq.consumer.group"
DLQ_FAILED_AT = "dlq.failed.at"

DLQ_DROPPED = "dlq.dropped"
"""What a dead letter too large to send lost: ``value``, ``value,key`` or ``value,key,headers``."""
DLQ_VALUE = "dlq.value"
"""Set on a dead letter of a record with neither key nor value (sent with an empty value)."""
DLQ_REDRIVE_COUNT = "dlq.redrive.count"
"""How many times ``dlq redrive`` re-published the record; the redriven record carries it."""
DLQ_PARKED_AT = "dlq.parked.at"
"""On a parked event that expired: when it was parked."""
DLQ_PARKED_SECONDS = "dlq.parked.seconds"
"""With ``dlq.parked.at``: how long it waited, in whole seconds."""

DLQ_PROVENANCE_HEADERS = (
    DLQ_REASON,
    DLQ_ERROR,
    DLQ_ERRORS,
    DLQ_ORIGINAL_TOPIC,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_CONSUMER_GROUP,
    DLQ_FAILED_AT,
)
"""The headers every dead letter carries, in the order the consumer writes them."""
DLQ_OCCASIONAL_HEADERS = (
    DLQ_DROPPED,
    DLQ_VALUE,
    DLQ_REDRIVE_COUNT,
    DLQ_PARKED_AT,
    DLQ_PARKED_SECONDS,
)
"""The ``dlq.*`` headers a dead letter carries only in the cases their names say."""

DLQ_MOST_ERRORS = 20
"""The most entries a ``dlq.errors`` list holds."""
