"""The pure part of `status`: where a partition is read from, lag in seconds, the owners
from a group description, the exit decision, the table and the parked events' line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from consumer.edges.store_lookup import ParkedSummary
from consumer.tools.display import render_table
from consumer.tools.status.report import (
    GroupView,
    Owner,
    PartitionStatus,
    StatusReport,
    age_text,
    group_view,
    lag_seconds,
    read_from,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def assignment(topic: str, *partitions: int) -> bytes:
    encoded: bytes = ConsumerProtocolMemberAssignment(0, [(topic, list(partitions))], b"").encode()
    return encoded


def test_the_stored_offset_wins_then_kafkas_committed_then_the_beginning() -> None:
    assert read_from(7, 5, 0) == (7, "postgresql")
    assert read_from(None, 5, 0) == (5, "kafka")
    assert read_from(None, None, 3) == (3, "beginning")


def test_lag_in_seconds_is_the_age_of_the_oldest_unapplied_record_and_0_when_none() -> None:
    assert lag_seconds(NOW, None) == 0
    assert lag_seconds(NOW, int((NOW - timedelta(seconds=90)).timestamp() * 1000)) == 90
    assert lag_seconds(NOW, int((NOW + timedelta(seconds=5)).timestamp() * 1000)) == 0
    assert lag_seconds(NOW, -1) is None  # a record without a timestamp


def test_owners_come_from_a_stable_groups_assignments_for_this_topic_only() -> None:
    members = [
        ("m-1", "c", "/10.0.0.1", b"", assignment("t", 0, 2)),
        ("m-2", "c", "/10.0.0.2", b"", assignment("other", 1)),
    ]
    view = group_view([(0, "g", "Stable", "consumer", "range", members)], "g", "t")
    assert view.unknown_owners is None and view.state == "Stable"
    assert view.owners == {0: Owner("m-1", "c", "/10.0.0.1"), 2: Owner("m-1", "c", "/10.0.0.1")}
    assert [view.owner_text(p) for p in (0, 1)] == ["m-1 (/10.0.0.1)", "none"]


def test_owners_are_unknown_unless_the_group_is_stable_and_its_assignments_readable() -> None:
    member = ("m-1", "", "", b"", b"")
    rebalancing = group_view([(0, "g", "PreparingRebalance", "consumer", "", [member])], "g", "t")
    assert rebalancing.unknown_owners == "the group is PreparingRebalance"
    assert rebalancing.owner_text(0) == "unknown"
    silent = group_view([(0, "g", "Stable", "consumer", "", [member])], "g", "t")
    assert silent.unknown_owners == "the broker does not report the members' assignments"
    assert silent.members == (Owner("m-1", "", ""),)
    garbled = ("m-1", "", "", b"", b"\x00")
    unreadable = group_view([(0, "g", "Stable", "consumer", "", [garbled])], "g", "t")
    assert unreadable.unknown_owners == "an assignment could not be read"
    failed = group_view([(16, "g", "", "", "", [])], "g", "t")
    assert failed.unknown_owners == "the broker answered error code 16"
    empty = group_view([(0, "g", "Empty", "", "", [])], "g", "t")
    assert empty.owner_text(0) == "none"
    assert group_view([], "g", "t").state is None


def partition(number: int, lag: float | None, stored: int | None = 10) -> PartitionStatus:
    return PartitionStatus(
        partition=number,
        stored_offset=stored,
        kafka_committed=None,
        high_watermark=12,
        read_from="postgresql" if stored is not None else "beginning",
        position=stored if stored is not None else 0,
        lag_seconds=lag,
        oldest_unapplied=None,
        last_commit=NOW if stored is not None else None,
    )


def test_a_partition_over_the_limit_makes_the_report_incomplete() -> None:
    view = GroupView.unknown("the group could not be described (KafkaTimeoutError)")
    parts = [partition(0, 0.0), partition(1, 301.5), partition(2, None, stored=None)]
    assert StatusReport("t", "g", NOW, view, parts).complete  # no limit asked
    over = StatusReport("t", "g", NOW, view, parts, max_lag_seconds=300)
    assert not over.complete and over.lagging == [1]
    assert StatusReport("t", "g", NOW, view, parts, max_lag_seconds=301.5).complete
    text = over.render()
    assert "group g (state unknown), at 2026-03-01T12:00:00Z" in text
    assert "lag over 300 s on partitions 1" in text
    assert "owners unknown: the group could not be described (KafkaTimeoutError)" in text
    assert "nothing stored in PostgreSQL for partitions 2" in text
    row = next(line for line in text.splitlines() if line.lstrip().startswith("1 "))
    assert row.split() == ["1", "10", "-", "12", "2", "301.5", "2026-03-01T12:00:00Z", "unknown"]
    assert over.to_json()["partitions"][2]["lag_seconds"] is None


def test_a_table_right_aligns_numbers_and_left_aligns_text() -> None:
    table = render_table(["n", "name"], [["5", "ab"], ["120", "c"]])
    assert table.splitlines() == ["  n  name", "  5  ab", "120  c"]


def test_a_stored_offset_past_the_end_of_the_log_is_said_and_makes_the_report_incomplete() -> None:
    view = GroupView.unknown("the group could not be described (KafkaTimeoutError)")
    parts = [partition(0, 0.0), partition(1, 0.0, stored=6902)]  # high watermark 12
    report = StatusReport("t", "g", NOW, view, parts)
    assert report.past_end == [1] and not report.complete
    assert report.partitions[1].lag_records == 0  # what used to hide it
    assert "stored offset past the end of the log on partitions 1" in report.render()
    assert report.to_json()["past_end"] == [1]
    assert StatusReport("t", "g", NOW, view, parts[:1]).complete


def parked(**by_reason: int) -> ParkedSummary:
    oldest = NOW - timedelta(hours=3, minutes=20, seconds=7) if by_reason else None
    return ParkedSummary(by_reason, oldest, NOW)


def test_parked_events_are_counted_by_reason_and_never_make_the_report_incomplete() -> None:
    view = GroupView.unknown("the group could not be described (KafkaTimeoutError)")
    waiting = StatusReport(
        "t", "g", NOW, view, [partition(0, 0.0)], parked=parked(conflict=1, unknown_user=2)
    )
    assert waiting.complete  # parked events are shown, never a reason to exit 1
    assert waiting.to_json()["parked"] == {
        "events": 3,
        "by_reason": {"unknown_user": 2, "conflict": 1},
        "oldest_parked_at": "2026-03-01T08:39:53.000Z",
        "oldest_age_seconds": 12_007.0,
    }
    assert (
        "parked events: 3 (2 unknown_user, 1 conflict), the oldest parked at "
        "2026-03-01T08:39:53Z, 3 h 20 min ago"
    ) in waiting.render().splitlines()
    none = StatusReport("t", "g", NOW, view, [partition(0, 0.0)], parked=parked())
    assert "parked events: none" in none.render().splitlines()
    assert none.to_json()["parked"] == {
        "events": 0,
        "by_reason": {"unknown_user": 0, "conflict": 0},
        "oldest_parked_at": None,
        "oldest_age_seconds": 0.0,
    }
    assert StatusReport("t", "g", NOW, view, []).to_json()["parked"] is None


def test_an_age_reads_in_the_two_largest_units_that_matter() -> None:
    assert [
        age_text(s) for s in (0, 4.24, 59.94, 59.96, 725, 3600, 12_007, 86_400 * 2 + 14_500)
    ] == [
        "0.0 s",
        "4.2 s",
        "59.9 s",
        "1 min 0 s",  # not 60.0 s
        "12 min 5 s",
        "1 h 0 min",
        "3 h 20 min",
        "2 d 4 h",
    ]
