"""The pure parts of `dlq list` and `dlq show`: filters, reading a dead letter, the table,
masking. No broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from consumer.cli import build_parser
from consumer.core.identity import event_key, event_source
from consumer.core.records import KafkaRecord
from consumer.tools.dlq.criteria import REASONS, Criteria, parse_reasons
from consumer.tools.dlq.letters import describe_errors, errors_of
from consumer.tools.dlq.listing import DlqSummary
from consumer.tools.dlq.masking import show_bytes
from consumer.tools.dlq.show import ShownLetter, ShowRequest
from consumer.tools.errors import BadArgument
from consumer.tools.kafkareader import OffsetRange

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENT = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "/crm",
    "type": "user.created",
    "subject": "u2",
    "data": {"email": "ada.lovelace@example.com", "name": "Ada Lovelace"},
}


def letter(
    offset: int,
    reason: str = "conflict",
    at: datetime = T0,
    value: bytes | None = None,
    *extra: tuple[str, bytes],
) -> KafkaRecord:
    errors = [{"loc": "data.email", "type": "conflict", "user_id": "u1"}]
    headers = (
        ("content-type", b"application/cloudevents+json"),
        *extra,
        ("dlq.reason", reason.encode()),
        ("dlq.error", b"email belongs to another active user: u1"),
        ("dlq.errors", json.dumps(errors).encode()),
        ("dlq.original.topic", b"user-events"),
        ("dlq.original.partition", b"2"),
        ("dlq.original.offset", str(100 + offset).encode()),
        ("dlq.failed.at", at.isoformat().encode()),
    )
    raw = json.dumps(EVENT).encode() if value is None else value
    return KafkaRecord("user-events.dlq", 0, offset, 0, b"u2", raw, headers)


def test_a_reason_outside_the_contract_is_a_bad_argument_that_lists_the_valid_ones() -> None:
    assert parse_reasons(["conflict", " unknown_user "]) == {"conflict", "unknown_user"}
    assert parse_reasons([]) == frozenset()
    with pytest.raises(BadArgument) as refused:
        parse_reasons(["conflict", "conflit"])
    assert "'conflit' is not a reason" in str(refused.value)
    assert all(reason in str(refused.value) for reason in REASONS)


def test_the_source_comes_from_the_ce_source_header_in_binary_mode_else_from_the_value() -> None:
    assert event_source(letter(0)) == "/crm"
    binary_headers = [("content-type", b"application/json"), ("ce_specversion", b"1.0")]
    binary = letter(
        1, "invalid", T0, b'{"email": "x"}', *binary_headers, ("ce_source", b"/billing")
    )
    assert event_source(binary) == "/billing"
    assert event_source(letter(2, "undecodable", T0, b"{not json")) is None
    assert event_source(letter(3, "undecodable", T0, b'["/crm"]')) is None
    assert event_source(letter(4, "undecodable", T0, b'{"source": 3}')) is None


def test_a_structured_letter_with_stray_ce_headers_is_the_event_its_value_names() -> None:
    """``dlq list --source`` and ``event`` read a letter's event by one rule, decode's: a
    structured content type wins over ``ce_*`` headers."""
    stray = letter(5, "invalid", T0, None, ("ce_specversion", b"1.0"), ("ce_source", b"/billing"))
    assert event_source(stray) == "/crm"
    assert event_key(stray) == ("/crm", "e-1")
    assert Criteria(source="/crm").matches(stray)
    assert not Criteria(source="/billing").matches(stray)


def test_filters_select_by_reason_source_and_failure_time() -> None:
    one = letter(0, "conflict", T0)
    assert Criteria(source="/crm").matches(one)
    assert not Criteria(source="/billing").matches(one)
    assert Criteria(reasons=frozenset({"conflict"}), since=T0).matches(one)
    assert not Criteria(since=T0 + timedelta(seconds=1)).matches(one)
    assert not Criteria(until=T0).matches(one)
    assert Criteria(until=T0 + timedelta(seconds=1)).matches(one)


def test_the_errors_header_reads_back_and_reads_well() -> None:
    entries = errors_of(letter(0).headers)
    assert entries == [{"loc": "data.email", "type": "conflict", "user_id": "u1"}]
    assert describe_errors(entries) == "data.email: conflict (held by u1)"
    assert describe_errors([{"loc": "", "type": "json_invalid"}]) == "<event>: json_invalid"
    assert errors_of((("dlq.errors", b"not json"),)) is None
    assert errors_of(()) is None  # a dead letter from before the header existed


def test_the_listing_counts_only_matches_and_tables_the_last_ones_newest_last() -> None:
    summary = DlqSummary("user-events.dlq", 2, Criteria(reasons=frozenset({"conflict"})))
    for offset, (reason, minutes) in enumerate(
        [("conflict", 3), ("invalid", 4), ("conflict", 1), ("conflict", 2)]
    ):
        summary.add(letter(offset, reason, T0 + timedelta(minutes=minutes)))
    data = summary.to_json()
    assert (data["read"], data["total"], data["by_reason"]) == (4, 3, {"conflict": 3})
    # By failure time, not by offset: offset 3 failed at minute 2, offset 0 at minute 3.
    assert [r["offset"] for r in data["last"]] == [3, 0]
    assert data["last"][1]["source"] == "/crm"
    assert data["last"][1]["original"] == {"topic": "user-events", "partition": 2, "offset": 100}
    shown = summary.render()
    lines = shown.splitlines()
    assert lines[0] == (
        "dead-letter topic user-events.dlq: 3 dead letters match --reason conflict (of 4 read)"
    )
    assert lines[-3].split() == ["DLQ", "P:O", "FAILED", "AT", "REASON", "SOURCE", "FROM", "ERRORS"]
    assert lines[-1].split()[:5] == [
        "0:0",
        "2026-01-01T00:03:00.000+00:00",
        "conflict",
        "/crm",
        "user-events/2@100",
    ]
    assert lines[-1].endswith("data.email: conflict (held by u1)")
    assert "Lovelace" not in shown + json.dumps(data) and "ada.lovelace@" not in json.dumps(data)


def test_show_parts_provenance_from_headers_and_masks_the_value_unless_revealed() -> None:
    found = letter(7, "conflict", T0, None, ("trace", b"mail ada@example.com"))
    masked = ShownLetter("user-events.dlq", ShowRequest(0, 7), found, OffsetRange(0, 9))
    data = masked.to_json()
    assert data["provenance"]["dlq.reason"] == "conflict"
    assert "dlq.errors" not in data["provenance"] and data["errors"][0]["user_id"] == "u1"
    assert data["headers"] == [
        ["content-type", "application/cloudevents+json"],
        ["trace", "mail a***@***.com"],
    ]
    text = masked.render()
    assert "Lovelace" not in text and "ada.lovelace@" not in text and "A***" in text
    assert "  data.email: conflict (held by u1)" in text.splitlines()
    assert '  "subject": "u2",' in text.splitlines()  # the value indented, for a person
    revealed = ShownLetter("user-events.dlq", ShowRequest(0, 7, True), found, OffsetRange(0, 9))
    assert "ada.lovelace@example.com" in revealed.render()
    assert masked.complete and revealed.complete


def test_show_says_where_the_partition_starts_and_ends_when_there_is_no_such_letter() -> None:
    missing = ShownLetter("user-events.dlq", ShowRequest(0, 42), None, OffsetRange(3, 9))
    assert not missing.complete
    assert (
        missing.render()
        == "no dead letter at 0:42 of user-events.dlq (partition 0 holds offsets 3 to 8)"
    )
    assert missing.to_json() == {
        "topic": "user-events.dlq",
        "partition": 0,
        "offset": 42,
        "found": False,
        "first": 3,
        "end": 9,
    }


def test_a_value_is_shown_whole_indented_and_masked() -> None:
    value = json.dumps(EVENT | {"note": "x" * 400}).encode()
    shown = show_bytes(value, indent=2) or ""
    assert len(shown) > 400 and '\n  "data": {' in shown and "Ada Lovelace" not in shown
    assert show_bytes(b"\xff write to x.y@example.org") == "\ufffd write to x***@***.org"
    assert (
        show_bytes(b"\xff write to x.y@example.org", reveal=True)
        == "\ufffd write to x.y@example.org"
    )
    assert show_bytes(None) is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["dlq", "show", "abc"], "dlq show 'abc' is not a partition:offset such as 0:42"),
        (["dlq", "show", "0:1,2:3"], "dlq show '0:1,2:3' is not a partition:offset such as 0:42"),
        (["dlq", "show", "-1:0"], "dlq show '-1:0' has partition -1: a partition is 0 or more"),
        (
            ["dlq", "list", "--since", "yesterday"],
            "--since 'yesterday' is not an RFC 3339 time such as 2026-01-01T00:00:00Z",
        ),
        (
            ["dlq", "list", "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"],
            "--since '2026-01-02T00:00:00Z' is not before --until '2026-01-01T00:00:00Z'",
        ),
        (
            ["dlq", "redrive", "--offsets", "-1:0"],
            "--offsets '-1:0' has partition -1: a partition is 0 or more",
        ),
        (["dlq", "list", "--last", "-1"], "--last '-1' is negative: give 0 or more"),
    ],
)
def test_a_bad_dlq_argument_is_refused_naming_it_then_its_value_then_what_is_expected(
    args: list[str], said: str
) -> None:
    parsed = build_parser().parse_args(args)
    request_of = parsed.handler.keywords["request_of"]
    with pytest.raises(BadArgument) as refused:
        request_of(parsed)
    assert str(refused.value) == said


def test_redrive_offsets_may_name_several_offsets_of_one_partition() -> None:
    parsed = build_parser().parse_args(["dlq", "redrive", "--offsets", "0:1, 0:2,3:0"])
    request = parsed.handler.keywords["request_of"](parsed)
    assert request.criteria.offsets == {(0, 1), (0, 2), (3, 0)}
    assert request.offsets_given == "0:1, 0:2,3:0"
