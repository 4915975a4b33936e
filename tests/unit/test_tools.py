"""Pure decisions of replay, dlq, rebuild and the tools' runner: no broker, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from user_events_schemas import build_event

from consumer.core.records import KafkaRecord
from consumer.core.rows import log_record
from consumer.edges.errors import DatabaseUnreachable
from consumer.edges.store_rebuild import LoggedRow
from consumer.settings import Settings
from consumer.tools.common import ToolError
from consumer.tools.dlq.criteria import Criteria
from consumer.tools.dlq.listing import DlqSummary
from consumer.tools.dlq.masking import mask_bytes, mask_text
from consumer.tools.dlq.redrive_rules import (
    Redrive,
    Refusal,
    advance,
    decide_redrive,
    redrive_ranges,
)
from consumer.tools.kafkareader import OffsetRange
from consumer.tools.rebuild import Projector, diff_users
from consumer.tools.replay.ranges import (
    first_offset_at_or_after,
    parse_from,
    parse_to,
    plan_ranges,
    time_lookup_answer,
)
from consumer.tools.runner import Exit, explain

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_from_and_to_parse_earliest_pairs_and_times() -> None:
    assert parse_from("earliest") == "earliest"
    assert parse_from("0:10, 2:5") == {0: 10, 2: 5}
    assert parse_from("2026-01-01T00:00:00Z") == T0
    assert parse_to("now") == "now"
    assert parse_to("2026-01-01T01:00:00+01:00") == T0
    for bad in ("yesterday", "2026-01-01T00:00:00", "0:1,0:2", "1:"):
        with pytest.raises(ValueError):
            parse_from(bad)


def test_the_broker_answer_is_used_when_it_has_a_timestamp_else_a_search_is_asked() -> None:
    target = 1_000
    assert time_lookup_answer(7, 1_005, target, highwater=10) == 7  # the broker path
    assert time_lookup_answer(None, None, target, highwater=10) == 10  # nothing that recent
    assert time_lookup_answer(0, -1, target, highwater=10) is None  # no timestamp: search
    assert time_lookup_answer(0, 999, target, highwater=10) is None  # older than asked: search
    assert first_offset_at_or_after([(3, 10), (4, 5), (5, 20)], 15) == 5
    assert first_offset_at_or_after([(3, 10)], 15) is None


def test_ranges_are_clamped_to_the_high_watermark_and_never_inverted() -> None:
    ranges = plan_ranges([0, 1, 2], {0: 3, 1: 50, 2: 0}, {0: 8}, {0: 10, 1: 20, 2: 0})
    assert ranges == {0: OffsetRange(3, 8), 1: OffsetRange(20, 20), 2: OffsetRange(0, 0)}
    assert ranges[1].size == 0


def letter(offset: int = 0, **headers: str) -> KafkaRecord:
    value = json.dumps(
        {
            "data": {"email": "ada.lovelace@example.com", "name": "Ada Lovelace"},
            "note": "mail bob@corp.example",
        }
    ).encode()
    return KafkaRecord(
        "t.dlq",
        0,
        offset,
        0,
        b"ada@example.com",
        value,
        (("trace", b"t-1"), *((k.replace("_", "."), v.encode()) for k, v in headers.items())),
    )


def test_masking_hides_emails_and_names_in_keys_and_values() -> None:
    shown = (mask_bytes(letter().value) or "") + (mask_bytes(letter().key) or "")
    assert "ada" not in shown.lower().replace("a***", "") and "Lovelace" not in shown
    assert "bob@" not in shown and "A***" in shown
    assert mask_text("write to x.y@example.org now") == "write to x***@***.org now"
    assert mask_bytes(b"\xff\xfe not json") is not None


def test_the_list_summary_counts_and_keeps_the_last_records() -> None:
    summary = DlqSummary("t.dlq", keep_last=2)
    for i, reason in enumerate(["conflict", "invalid", "conflict"]):
        summary.add(
            letter(
                i,
                dlq_reason=reason,
                dlq_original_topic="t",
                dlq_failed_at=(T0 + timedelta(minutes=i)).isoformat(),
            )
        )
    data = summary.to_json()
    assert data["by_reason"] == {"conflict": 2, "invalid": 1}
    assert (data["oldest"]["offset"], data["newest"]["offset"]) == (0, 2)
    assert [r["offset"] for r in data["last"]] == [1, 2]
    assert ["trace", "t-1"] in data["last"][0]["headers"]
    assert "Lovelace" not in summary.render()


def test_filters_select_by_reason_time_and_offsets() -> None:
    one = letter(4, dlq_reason="conflict", dlq_failed_at=T0.isoformat())
    assert Criteria().matches(one)
    assert Criteria(reasons=frozenset({"conflict"})).matches(one)
    assert not Criteria(reasons=frozenset({"invalid"})).matches(one)
    assert Criteria(since=T0, until=T0 + timedelta(seconds=1)).matches(one)
    assert not Criteria(until=T0).matches(one)
    assert not Criteria(offsets=frozenset({(0, 5)})).matches(one)


def test_redrive_copies_original_headers_counts_and_refuses_past_the_limit() -> None:
    first = decide_redrive(letter(dlq_reason="conflict", dlq_original_topic="t"), 3)
    assert isinstance(first, Redrive) and first.topic == "t" and first.count == 1
    assert first.headers == [("trace", b"t-1"), ("dlq.redrive.count", b"1")]
    again = decide_redrive(letter(dlq_redrive_count="2", dlq_original_topic="t"), 3)
    assert isinstance(again, Redrive) and again.count == 3
    assert decide_redrive(letter(dlq_redrive_count="3", dlq_original_topic="t"), 3) == Refusal(
        "redriven 3 times already (limit 3)", 3, at_limit=True
    )
    assert isinstance(decide_redrive(letter(), 3), Refusal)  # no original topic
    # A dead letter that does not hold the record as it was is not republished.
    for missing in ({"dlq_dropped": "value,key"}, {"dlq_value": "null: no key nor value"}):
        refused = decide_redrive(letter(dlq_original_topic="t", **missing), 3)
        assert isinstance(refused, Refusal) and "dlq." in refused.detail
        assert not refused.at_limit  # for good: a higher limit does not change it


def test_the_position_moves_only_over_handled_records() -> None:
    assert advance(5, [(5, True), (6, True)]) == (7, True)
    assert advance(5, [(5, True), (6, False), (7, True)]) == (6, False)
    assert advance(5, []) == (5, True)
    assert redrive_ranges({0: 10, 1: 4}, {0: 6}, {1: 2}) == {
        0: OffsetRange(6, 10),
        1: OffsetRange(2, 4),
    }
    assert redrive_ranges({0: 10, 1: 4}, {}, {}, [(0, 3), (0, 12)]) == {0: OffsetRange(3, 10)}


def test_the_rebuild_fold_matches_and_reports_a_diff() -> None:
    events = [
        build_event(
            "user.created",
            "u1",
            {"email": "a@example.com", "name": "A"},
            source="/tests",
            sequence=1,
            time=T0,
        ),
        build_event("user.updated", "u1", {"name": "B"}, source="/tests", sequence=3, time=T0),
        build_event("user.updated", "u1", {"name": "Old"}, source="/tests", sequence=2, time=T0),
        build_event(
            "user.created",
            "u2",
            {"email": "A@example.com", "name": "C"},
            source="/tests",
            sequence=1,
            time=T0,
        ),
    ]
    projector = Projector()
    # Rows as the log held them before keys: the values in plain, nothing sealed.
    rows = [LoggedRow(log_record("t", 0, i, json.dumps(e)), None) for i, e in enumerate(events)]
    projector.feed(rows[:2])
    projector.feed(rows[2:])
    assert projector.users["u1"].name == "B"
    assert "u2" not in projector.users  # its email is held by an active user: a conflict
    assert projector.outcomes == {"applied": 2, "stale": 1, "conflict": 1}
    assert diff_users({}, projector.users) == {"added": ["u1"], "removed": [], "changed": []}


def test_the_runner_names_a_failure_by_its_type_never_by_its_message() -> None:
    settings = Settings(kafka_bootstrap_servers="kafka:9092")
    secret = "postgresql://app:hunter2@db/app"
    cases = [
        (ToolError("topic 't' does not exist"), "topic 't' does not exist", Exit.CANNOT_RUN),
        (ConnectionRefusedError(secret), "cannot reach PostgreSQL: ConnectionRefusedError", 2),
        (DatabaseUnreachable("InvalidPasswordError"), "PostgreSQL: InvalidPasswordError", 2),
        (KafkaConnectionError(secret), "cannot reach Kafka at kafka:9092", Exit.CANNOT_RUN),
        (TopicAuthorizationFailedError(secret), "Kafka at kafka:9092 answered", 1),
        (asyncpg.InsufficientPrivilegeError(secret), "PostgreSQL answered", Exit.INCOMPLETE),
        (KeyError(secret), "failed: KeyError", Exit.INCOMPLETE),
    ]
    for exc, said, code in cases:
        line, exit_code = explain(exc, settings)
        assert said in line and exit_code == code and "hunter2" not in line, (exc, line)
