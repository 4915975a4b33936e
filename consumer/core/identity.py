"""Which event a record says it is, read without validating it. Pure.

A dead letter holds a record the contract refused, so ``decode`` cannot tell its
CloudEvents ``source`` and ``id``; this reads them the way ``decode`` would find them
(the same mode rule), whatever else is wrong with the record.
"""

from __future__ import annotations

import orjson
from user_events_schemas.wire import BINARY_PREFIX, SPECVERSION_HEADER

from consumer.core.decode import is_binary_mode
from consumer.core.ordering import EventKey
from consumer.core.records import KafkaRecord


def event_key(record: KafkaRecord) -> EventKey | None:
    """The (source, id) ``record`` names: the ``ce_source`` and ``ce_id`` headers in binary
    mode, the value's ``source`` and ``id`` in structured mode. None when it names no
    text source and id (a value that is not JSON, a header that is not UTF-8)."""
    headers = dict(record.headers)  # the last of a repeated header counts, as in decode
    if is_binary_mode(headers.get("content-type"), SPECVERSION_HEADER in headers):
        source, event_id = headers.get(BINARY_PREFIX + "source"), headers.get(BINARY_PREFIX + "id")
        if source is None or event_id is None:
            return None
        try:
            return source.decode(), event_id.decode()
        except UnicodeDecodeError:
            return None
    if record.value is None:
        return None
    try:
        event = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    source, event_id = event.get("source"), event.get("id")
    if isinstance(source, str) and isinstance(event_id, str):
        return source, event_id
    return None
