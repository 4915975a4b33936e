"""Pure decisions of replay, dlq, rebuild and the tools' runner: no broker, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from user_events_schemas import build_event

from consumer.cli import migrate_report
from consumer.core.records import KafkaRecord
from consumer.core.rows import log_record
from consumer.edges.errors import DatabaseUnreachable
from consumer.edges.migrate import Migration
from consumer.edges.store_rebuild import LoggedRow
from consumer.settings import Settings
from consumer.tools.arguments import check_partitions, parse_pairs, parse_time
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
from consumer.tools.errors import BadArgument, ToolError
from consumer.tools.kafkareader import OffsetRange
from consumer.tools.rebuild import Projector, diff_users
from consumer.tools.replay.ranges import (
    check_order,
    check_starts,
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


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("yesterday", "--from 'yesterday' is not an RFC 3339 time such as 2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00", "--from '2026-01-01T00:00:00' has no UTC offset (add Z or +hh:mm)"),
        ("0:1,0:2", "--from '0:1,0:2' gives partition 0 twice"),
        ("-1:0", "--from '-1:0' has partition -1: a partition is 0 or more"),
        ("0:-5", "--from '0:-5' has offset -5: an offset is 0 or more"),
    ],
)
def test_a_bad_from_is_refused_naming_the_flag_then_the_value_then_what_is_expected(
    bad: str, said: str
) -> None:
    with pytest.raises(BadArgument) as refused:
        parse_from(bad)
    assert str(refused.value) == said


def test_a_bad_value_names_its_flag_the_same_way_in_every_tool() -> None:
    with pytest.raises(BadArgument, match=r"^--since 'soon' is not an RFC 3339 time such as "):
        parse_time("soon", "--since")
    with pytest.raises(BadArgument, match=r"^--offsets '0:1:2' is not a list of partition:"):
        parse_pairs("0:1:2", "--offsets")
    with pytest.raises(BadArgument) as refused:
        check_partitions("--offsets", "5:0", [5], [0, 1, 2], "dlq")
    assert str(refused.value) == (
        "--offsets '5:0': topic 'dlq' has no partition 5 (it has partitions 0 to 2)"
    )
    check_partitions("--offsets", "2:0", [2], [0, 1, 2], "dlq")  # there: no refusal


def test_a_reversed_replay_range_is_refused_naming_both_flags() -> None:
    later = T0 + timedelta(days=1)
    with pytest.raises(BadArgument) as refused:
        check_order(later, T0, ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"))
    assert str(refused.value) == (
        "--from '2026-01-02T00:00:00Z' is not before --to '2026-01-01T00:00:00Z'"
    )
    with pytest.raises(BadArgument, match="is not before"):
        check_order(T0, T0)
    check_order(T0, later)
    check_order("earliest", T0)
    with pytest.raises(BadArgument) as refused:
        check_starts({0: 8}, {0: 5}, {0: 10}, "events", ("0:8", "2026-01-01T00:00:00Z"))
    assert str(refused.value) == (
        "--from '0:8' is after --to '2026-01-01T00:00:00Z' on partition 0 "
        "(--to ends it at offset 5)"
    )


def test_a_replay_from_past_the_end_is_refused_with_the_end_offset() -> None:
    with pytest.raises(BadArgument) as refused:
        check_starts({0: 99999}, {}, {0: 12}, "events", ("0:99999", "now"))
    assert str(refused.value) == (
        "--from '0:99999': offset 99999 is past the end of partition 0 of 'events' "
        "(its end offset is 12)"
    )
    check_starts({0: 12}, {}, {0: 12}, "events", ("0:12", "now"))  # at the end: nothing to do


def test_migrate_says_what_it_applied_or_that_it_is_up_to_date() -> None:
    shipped = [Migration(1, "initial", ""), Migration(6, "parked_events", "")]
    assert migrate_report([], shipped) == "nothing to apply: up to date at 0006"
    assert migrate_report(shipped[1:], shipped) == (
        "applied 0006_parked_events: up to date at 0006"
    )


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
