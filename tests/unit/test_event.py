"""The pure part of `event`: the question, which event a record names, which dead letters
hold it, and the verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.decode import AnyUserEvent, decode
from consumer.core.identity import event_key
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.edges.store_lookup import LoggedEvent
from consumer.tools.common import BadArgument
from consumer.tools.event.answer import (
    ByKey,
    ByPosition,
    DeadLetterSeen,
    EventAnswer,
    RecordSeen,
    is_letter_of,
    parse_query,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENT = build_event(
    "user.created", "u1", {"email": "a@example.com", "name": "A"}, source="/tests", event_id="e1"
)
KEY = (EVENT["source"], "e1")


def record(value: bytes | None, headers: list[tuple[str, bytes]], offset: int = 4) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, 1_700_000_000_000, b"u1", value, tuple(headers))


def letter(base: KafkaRecord, reason: str = "invalid", offset: int = 4) -> KafkaRecord:
    provenance = [
        ("dlq.reason", reason.encode()),
        ("dlq.error", b"data.email: value_error for a@example.com"),
        ("dlq.original.topic", b"t"),
        ("dlq.original.partition", b"0"),
        ("dlq.original.offset", str(offset).encode()),
        ("dlq.consumer.group", b"g"),
        ("dlq.failed.at", b"2026-01-01T00:00:00.000+00:00"),
    ]
    return base._replace(topic="t.dlq", offset=9, headers=(*base.headers, *provenance))


def logged(offset: int, outcome: str = "applied") -> LoggedEvent:
    return LoggedEvent(*KEY, "u1", "user.created", T0, None, "t", 0, offset, outcome, T0)


def test_a_question_is_source_and_id_together_or_one_position() -> None:
    assert parse_query("/s", "1", None, None) == ByKey("/s", "1")
    assert parse_query(None, None, "2:40", None) == ByPosition(2, 40)
    assert parse_query(None, None, "2:40", "other") == ByPosition(2, 40, "other")
    for source, event_id, at, topic in [
        ("/s", None, None, None),
        (None, "1", None, None),
        ("/s", "1", "0:1", None),
        (None, None, "0:1,1:1", None),
        (None, None, "zero", None),
        ("/s", "1", None, "t"),
        (None, None, None, None),
    ]:
        with pytest.raises(BadArgument):
            parse_query(source, event_id, at, topic)


def test_a_record_names_its_event_in_either_mode_even_when_the_contract_refuses_it() -> None:
    assert event_key(record(*structured_record(EVENT)[1:])) == KEY
    assert event_key(record(*binary_record(EVENT)[1:])) == KEY
    refused = {**EVENT, "data": {"email": "not-an-address"}}
    assert isinstance(decode(record(*structured_record(refused)[1:]), 10_000), Rejection)
    assert event_key(record(*structured_record(refused)[1:])) == KEY
    assert event_key(record(*binary_record(refused)[1:])) == KEY
    assert event_key(record(b"{ not json", [])) is None
    assert event_key(record(json.dumps({**EVENT, "id": 7}).encode(), [])) is None
    assert event_key(record(None, [])) is None
    # A structured content type wins over ce_ headers, as in decode.
    other = json.dumps({**EVENT, "id": "e2"}).encode()
    headers = [*binary_record(EVENT)[2], ("content-type", b"application/cloudevents+json")]
    assert event_key(record(other, headers)) == (EVENT["source"], "e2")


def test_a_dead_letter_is_the_events_by_source_and_id_or_by_original_position() -> None:
    dead = letter(record(*binary_record(EVENT)[1:]))
    assert is_letter_of(dead, KEY, None)
    assert is_letter_of(dead, None, ("t", 0, 4))
    assert not is_letter_of(dead, ("/other", "e1"), ("t", 0, 5))
    seen = DeadLetterSeen.of(dead)
    assert (seen.reason, seen.original, seen.consumer_group) == ("invalid", ("t", 0, 4), "g")
    assert seen.error == "data.email: value_error for a***@***.com"  # masked all the same


def answer(
    logged_event: LoggedEvent | None = None,
    letters: list[DeadLetterSeen] | None = None,
    at: int | None = None,
    stored: int | None = None,
    decoded: AnyUserEvent | Rejection | None = None,
) -> EventAnswer:
    seen = None
    if at is not None:
        value = (
            decoded if decoded is not None else decode(record(*structured_record(EVENT)[1:]), 10**6)
        )
        seen = RecordSeen(("t", 0, at), 0, value)
    return EventAnswer(ByKey(*KEY), "t.dlq", KEY, logged_event, letters or [], seen, stored)


def test_the_verdict_follows_the_log_then_the_dead_letters_then_the_position() -> None:
    dead = DeadLetterSeen.of(letter(record(*structured_record(EVENT)[1:]), "conflict"))
    assert answer(logged(4)).verdict == "applied"
    assert answer(logged(4, "stale")).verdict == "stale"
    assert answer(logged(4), at=4).verdict == "applied"
    assert answer(logged(2), at=4).verdict == "duplicate"
    assert answer(None, [dead]).verdict == "dead_lettered"
    assert answer(None, [dead], at=4).verdict == "dead_lettered"
    assert answer(None, [dead], at=5, stored=9).verdict == "not_found"  # another copy's letter
    assert answer(None, at=5, stored=5).verdict == "pending"
    assert answer(None, at=5).verdict == "pending"  # nothing stored for the partition yet
    assert answer(None).verdict == "not_found" and not answer(None).complete
    refused = Rejection(Reason.UNDECODABLE, "value is not a JSON object")
    assert answer(logged(2), [dead], at=4, decoded=refused).verdict == "dead_lettered"


def test_the_text_says_where_the_event_is_and_never_its_personal_data() -> None:
    dead = DeadLetterSeen.of(letter(record(*structured_record(EVENT)[1:]), "conflict"))
    text = answer(logged(2), [dead], at=4).render()
    assert text.splitlines() == [
        "record t 0:4: user.created for user u1",
        f"event {KEY[0]} e1: duplicate",
        "  event log: applied, user u1, user.created, from t 0:2, recorded "
        "2026-01-01T00:00:00.000Z",
        "  dead letter t.dlq 0:9: conflict (data.email: value_error for a***@***.com), from "
        "t 0:4, failed at 2026-01-01T00:00:00.000Z",
    ]
    assert "a@example.com" not in text and "a@example.com" not in json.dumps(
        answer(logged(2), [dead], at=4).to_json()
    )
