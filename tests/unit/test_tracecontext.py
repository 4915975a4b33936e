"""The trace context a record came with (the CloudEvents distributed-tracing extension),
read off the record in either mode, whatever else is wrong with it."""

from __future__ import annotations

import json

from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.tracecontext import MOST_CHARS, CreationContext, creation_context
from tests.factories import record_of

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
EVENT = build_event(
    "user.created",
    "u1",
    {"email": "a@example.com", "name": "A"},
    source="/signup",
    event_id="e1",
)
NAMED = {
    "cloudevents.event_id": "e1",
    "cloudevents.event_source": "/signup",
    "cloudevents.event_type": "user.created",
    "cloudevents.event_subject": "u1",
    "cloudevents.event_spec_version": "1.0",
}


def test_structured_mode_reads_the_top_level_traceparent_and_tracestate() -> None:
    event = EVENT | {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    assert creation_context(record_of(structured_record(event))) == CreationContext(
        TRACEPARENT, "vendor=1", NAMED
    )


def test_binary_mode_reads_the_ce_traceparent_header() -> None:
    assert creation_context(
        record_of(binary_record(EVENT | {"traceparent": TRACEPARENT}))
    ) == CreationContext(TRACEPARENT, None, NAMED)


def test_an_event_without_the_extension_has_no_context() -> None:
    assert creation_context(record_of(structured_record(EVENT))) is None
    assert creation_context(record_of(binary_record(EVENT))) is None


def test_a_traceparent_inside_data_is_not_the_events() -> None:
    event = EVENT | {"data": {"email": "a@example.com", "name": "A", "traceparent": TRACEPARENT}}
    assert creation_context(record_of(structured_record(event))) is None


def test_the_mode_rule_is_decodes_a_structured_content_type_wins_over_ce_headers() -> None:
    key, value, _ = structured_record(EVENT)
    headers = [
        ("content-type", b"application/cloudevents+json; charset=utf-8"),
        ("ce_specversion", b"1.0"),
        ("ce_traceparent", TRACEPARENT.encode()),
    ]
    assert creation_context(record_of((key, value, headers))) is None


def test_a_poison_record_names_what_it_can_of_itself() -> None:
    poison = {"traceparent": TRACEPARENT, "id": 12, "source": "/s", "type": "user.unknown"}
    found = creation_context(record_of((b"k", json.dumps(poison).encode(), [])))
    assert found == CreationContext(
        TRACEPARENT,
        None,
        {"cloudevents.event_source": "/s", "cloudevents.event_type": "user.unknown"},
    )
    assert creation_context(record_of((b"k", b'{"traceparent": ', []))) is None
    assert creation_context(record_of((b"k", b'["traceparent"]', []))) is None
    assert creation_context(record_of((b"k", None, []))) is None
    binary = [("ce_specversion", b"1.0"), ("ce_traceparent", b"\xff\xfe"), ("ce_id", b"x")]
    assert creation_context(record_of((b"k", b"{}", binary))) is None


def test_a_non_text_traceparent_is_no_context_and_long_attributes_are_cut() -> None:
    event = EVENT | {"traceparent": 42}
    assert creation_context(record_of(structured_record(event))) is None
    long = EVENT | {"traceparent": TRACEPARENT, "source": "/" + "s" * 2000}
    found = creation_context(record_of((b"k", json.dumps(long).encode(), [])))
    assert found is not None
    assert found.attributes["cloudevents.event_source"] == "/" + "s" * (MOST_CHARS - 1)
