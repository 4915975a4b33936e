"""The trace context a record came with: the CloudEvents distributed-tracing extension. Pure.

A publisher that traces puts the W3C ``traceparent`` (and ``tracestate``) of the span that
created the event on the event itself: top-level attributes in structured mode, the
``ce_traceparent`` and ``ce_tracestate`` headers in binary mode, told apart by the same rule
as ``decode``. They are read off the record, not the validated event (the contract ignores
extension attributes), so a poison record's context is found as well as a valid one's.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson
from user_events_schemas import BINARY_PREFIX, SPECVERSION_HEADER

from consumer.core.decode import is_binary_mode
from consumer.core.records import KafkaRecord

# The CloudEvents attributes a link names the event by, as the OpenTelemetry semantic
# conventions for CloudEvents call them.
LINK_ATTRIBUTES = {
    "id": "cloudevents.event_id",
    "source": "cloudevents.event_source",
    "type": "cloudevents.event_type",
    "subject": "cloudevents.event_subject",
    "specversion": "cloudevents.event_spec_version",
}
# A poison record's attributes can be of any size: a link keeps this many characters of
# each (the contract's longest attribute, ``source``, has 512).
MOST_CHARS = 512


class CreationContext(NamedTuple):
    """A record's trace context, as text, and the CloudEvents attributes it names itself
    by (``cloudevents.*``), those it has. Not yet checked against W3C Trace Context."""

    traceparent: str
    tracestate: str | None
    attributes: dict[str, str]


def creation_context(record: KafkaRecord) -> CreationContext | None:
    """The trace context ``record`` carries, or None when it carries none that is text."""
    content_type: bytes | None = None
    has_specversion = False
    extensions: dict[str, bytes] = {}
    for name, raw in record.headers:
        if name == "content-type":
            if raw is not None:
                content_type = raw
        elif name.startswith(BINARY_PREFIX):
            has_specversion = has_specversion or name == SPECVERSION_HEADER
            if raw is not None:
                extensions[name[len(BINARY_PREFIX) :]] = raw  # the last one counts, as in decode
    if is_binary_mode(content_type, has_specversion):
        attributes: dict[str, object] = {
            name: _header_text(raw) for name, raw in extensions.items()
        }
    else:
        attributes = _structured_attributes(record.value)
    traceparent = attributes.get("traceparent")
    if not isinstance(traceparent, str):
        return None
    tracestate = attributes.get("tracestate")
    return CreationContext(
        traceparent,
        tracestate if isinstance(tracestate, str) else None,
        {
            key: value[:MOST_CHARS]
            for name, key in LINK_ATTRIBUTES.items()
            if isinstance(value := attributes.get(name), str)
        },
    )


def _structured_attributes(value: bytes | None) -> dict[str, object]:
    # Most events carry no trace context: a search of the bytes spares them the parse.
    if value is None or b"traceparent" not in value:
        return {}
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _header_text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
