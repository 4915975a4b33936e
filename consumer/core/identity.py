"""Which event a record says it is, read without validating it. Pure.

A dead letter holds a record the contract refused, so ``decode`` cannot tell its
CloudEvents ``source`` and ``id``; this reads them the way ``decode`` would find them
(the same mode rule), whatever else is wrong with the record. The ``event`` tool and
``dlq list --source`` both ask it, so they agree on which event a dead letter holds.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from user_events_schemas import BINARY_PREFIX, SPECVERSION_HEADER

from consumer.core.decode import is_binary_mode
from consumer.core.projection import EventKey
from consumer.core.records import KafkaRecord

_SOURCE_HEADER = BINARY_PREFIX + "source"
_ID_HEADER = BINARY_PREFIX + "id"


class Named(NamedTuple):
    """The ``source`` and ``id`` a record names, each None when it names none as text."""

    source: str | None
    id: str | None


def named(record: KafkaRecord) -> Named:
    """The source and id ``record`` names: the ``ce_source`` and ``ce_id`` headers in
    binary mode, the value's ``source`` and ``id`` in structured mode (its ``ce_*``
    headers ignored, as ``decode`` ignores them). Each is None when absent or not text (a
    value that is not a JSON object, a header that is not UTF-8)."""
    headers = dict(record.headers)  # the last of a repeated header counts, as in decode
    if is_binary_mode(headers.get("content-type"), SPECVERSION_HEADER in headers):
        return Named(_text(headers.get(_SOURCE_HEADER)), _text(headers.get(_ID_HEADER)))
    if record.value is None:
        return Named(None, None)
    try:
        # Not orjson: a value the contract refuses for its NaN or its lone surrogate
        # still names its event.
        event = json.loads(record.value)
    except (ValueError, RecursionError):
        return Named(None, None)
    if not isinstance(event, dict):
        return Named(None, None)
    source, event_id = event.get("source"), event.get("id")
    return Named(
        source if isinstance(source, str) else None,
        event_id if isinstance(event_id, str) else None,
    )


def event_key(record: KafkaRecord) -> EventKey | None:
    """The (source, id) ``record`` names (``named``); None unless it names both."""
    source, event_id = named(record)
    if source is None or event_id is None:
        return None
    return source, event_id


def event_source(record: KafkaRecord) -> str | None:
    """The source ``record`` names (``named``), if any: what ``dlq list --source`` matches."""
    return named(record).source


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
