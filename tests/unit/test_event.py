"""The pure part of `event`: the question, which event a record names, which dead letters
hold it, the verdict, and how a parked or healed event is told."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from user_events_schemas import binary_record, build_event, structured_record

from consumer.core.decode import AnyUserEvent, decode
from consumer.core.identity import event_key, event_source, named
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.edges.store_lookup import LoggedEvent, ParkedEvent
from consumer.tools.errors import BadArgument
from consumer.tools.event.answer import DeadLetterSeen, EventAnswer, RecordSeen
from consumer.tools.event.query import ByKey, ByPosition, is_letter_of, parse_query
from tests import factories

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENT = build_event(
    "user.created", "u1", {"email": "a@example.com", "name": "A"}, source="/tests", event_id="e1"
)
KEY = (EVENT["source"], "e1")


record = partial(factories.record, key=b"u1", offset=4)


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


def test_a_record_names_its_source_alone_by_the_same_mode_rule() -> None:
    """``dlq list --source`` reads the source by ``event``'s rule: a stray ``ce_source``
    on a structured record is ignored, and a binary one without ``ce_id`` still names it."""
    _, value, headers = structured_record(EVENT)
    stray = [*headers, ("ce_specversion", b"1.0"), ("ce_source", b"/elsewhere")]
    assert event_source(record(value, stray)) == EVENT["source"]
    assert event_key(record(value, stray)) == KEY
    _, value, headers = binary_record(EVENT)
    without_id = [(name, raw) for name, raw in headers if name != "ce_id"]
    assert named(record(value, without_id)) == (EVENT["source"], None)
    assert event_key(record(value, without_id)) is None
    assert event_source(record(value, [*without_id, ("ce_source", b"\xff")])) is None


def test_a_dead_letter_is_the_events_by_source_and_id_or_by_original_position() -> None:
    dead = letter(record(*binary_record(EVENT)[1:]))
    assert is_letter_of(dead, KEY, None)
    assert is_letter_of(dead, None, ("t", 0, 4))
    assert not is_letter_of(dead, ("/other", "e1"), ("t", 0, 5))
    seen = DeadLetterSeen.of(dead)
    assert (seen.reason, seen.original, seen.consumer_group) == ("invalid", ("t", 0, 4), "g")
    assert seen.error == "data.email: value_error for a***@***.com"  # masked all the same


def parked(
    reason: str = "unknown_user", offset: int = 4, held_by: str | None = None
) -> ParkedEvent:
    checked = T0 + timedelta(minutes=12, seconds=5)
    return ParkedEvent(*KEY, "u1", reason, "t", 0, offset, T0, checked, held_by)


def answer(
    logged_event: LoggedEvent | None = None,
    letters: list[DeadLetterSeen] | None = None,
    at: int | None = None,
    stored: int | None = None,
    decoded: AnyUserEvent | Rejection | None = None,
    parked_event: ParkedEvent | None = None,
) -> EventAnswer:
    seen = None
    if at is not None:
        value = (
            decoded if decoded is not None else decode(record(*structured_record(EVENT)[1:]), 10**6)
        )
        seen = RecordSeen(("t", 0, at), 0, value)
    return EventAnswer(
        ByKey(*KEY), "t.dlq", KEY, logged_event, letters or [], seen, stored, parked_event
    )


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


def test_a_parked_event_is_found_parked_unless_logged_or_its_record_is_refused() -> None:
    dead = DeadLetterSeen.of(letter(record(*structured_record(EVENT)[1:]), "unknown_user"))
    assert (
        answer(parked_event=parked()).verdict == "parked" and answer(parked_event=parked()).complete
    )
    assert answer(parked_event=parked(), at=4, stored=9).verdict == "parked"
    # Another copy, or one the consumer has not reached: parked with it.
    assert answer(parked_event=parked(), at=6, stored=5).verdict == "parked"
    # Dead-lettered when it expired, redriven, parked again: parked is where it is now.
    assert answer(None, [dead], at=4, parked_event=parked(offset=8)).verdict == "parked"
    refused = Rejection(Reason.UNDECODABLE, "value is not a JSON object")
    assert answer(None, [dead], at=4, decoded=refused, parked_event=parked()).verdict == (
        "dead_lettered"
    )
    assert answer(logged(4), parked_event=parked()).verdict == "applied"


def test_a_parked_event_says_why_for_what_and_since_when_and_never_the_email() -> None:
    text = answer(parked_event=parked()).render()
    assert text.splitlines() == [
        f"event {KEY[0]} e1: parked",
        "  event log: not there",
        "  parked: unknown_user, user u1, from t 0:4, parked at 2026-01-01T00:00:00.000Z "
        "(12 min 5 s ago)",
        "  waits for the user's user.created (user id u1)",
        "  dead letters in t.dlq: none",
    ]
    assert answer(parked_event=parked()).to_json()["parked"] == {
        "reason": "unknown_user",
        "user_id": "u1",
        "waits_for": {"what": "user_created", "user_id": "u1"},
        "parked_at": "2026-01-01T00:00:00.000Z",
        "parked_seconds": 725.0,
        "kafka": {"topic": "t", "partition": 0, "offset": 4},
    }
    held = answer(parked_event=parked("conflict", held_by="u9"))
    assert "  waits for its email to be freed by another active user (held now by user u9)" in (
        held.render().splitlines()
    )
    assert held.to_json()["parked"]["waits_for"] == {"what": "email_freed", "email_held_by": "u9"}
    freed = answer(parked_event=parked("conflict")).render()
    assert "(no active user holds it now: the next sweep heals it)" in freed
    assert "@" not in held.render() + json.dumps(held.to_json())


def test_a_healed_event_stays_applied_or_stale_and_says_how_long_it_waited() -> None:
    healed = logged(4)._replace(
        recorded_at=T0 + timedelta(seconds=3, milliseconds=250), parked_at=T0
    )
    assert healed.healed_after_seconds == 3.25
    found = answer(healed)
    assert found.verdict == "applied"
    assert found.render().splitlines()[2] == (
        "  healed after 3.2 s: parked at 2026-01-01T00:00:00.000Z until what it waited for landed"
    )
    log = found.to_json()["log"]
    assert (log["parked_at"], log["healed_after_seconds"]) == ("2026-01-01T00:00:00.000Z", 3.25)
    stale = answer(logged(4, "stale")._replace(recorded_at=T0 + timedelta(hours=2), parked_at=T0))
    assert stale.verdict == "stale" and "  healed after 2 h 0 min: parked at" in stale.render()
    never = answer(logged(4))
    assert never.to_json()["log"]["healed_after_seconds"] is None
    assert "healed" not in never.render() and never.to_json()["parked"] is None


def test_by_position_the_records_own_dead_letter_leads_and_others_of_its_id_are_capped() -> None:
    base = record(*structured_record(EVENT)[1:])
    own = DeadLetterSeen.of(letter(base, "invalid", offset=4))
    others = [DeadLetterSeen.of(letter(base, "invalid", offset=10 + n)) for n in range(7)]
    lines = answer(None, [*others[:3], own, *others[3:]], at=4).render().splitlines()
    assert lines[0] == "record t 0:4: user.created for user u1"
    assert lines[3].startswith("  dead letter t.dlq 0:9: invalid (") and lines[3].count("t 0:4")
    assert lines[4] == "  7 other dead letters with its source and id:"
    assert [line.split(", from ")[1][:6] for line in lines[5:10]] == [
        "t 0:10",
        "t 0:11",
        "t 0:12",
        "t 0:13",
        "t 0:14",
    ]
    assert all(line.startswith("    dead letter ") for line in lines[5:10])
    assert lines[10:] == [f"    and 2 more (event --source {KEY[0]} --id e1 lists them all)"]
    one_other = answer(None, [own, others[0]], at=4).render().splitlines()
    assert one_other[4] == "  1 other dead letter with its source and id:"
    assert len(one_other) == 6
    # asked by source and id, every dead letter is the event's: all listed
    by_key = answer(None, [own, *others]).render().splitlines()
    assert sum(line.startswith("  dead letter ") for line in by_key) == 8
