"""Parking's pure rules: what is parked within the bounds, how a user's waiting events are
decided together, and what becomes of each. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.core.batchplan import Planner, Verdict, email_conflict, move_email
from consumer.core.parking import (
    PARKED_COLUMNS,
    Parked,
    Parking,
    ParkingLimits,
    choose_parked,
    healing_order,
    parked_record,
    parked_rejection,
    parking_row,
    sort_decided,
)
from consumer.core.records import KafkaRecord, Outcome, Reason, Rejection
from tests.unit.test_projection import ev, fold, rec

NEVER_CREATED = Rejection(Reason.UNKNOWN_USER, "never created")
SINCE = datetime(2026, 1, 2, tzinfo=UTC)


def orphan(user: str, seq: int) -> Verdict:
    return Verdict(rec(seq), ev("user.updated", user, seq, name="x"), NEVER_CREATED)


def test_parkable_rejections_are_parked_within_the_bounds_and_dead_lettered_past_them() -> None:
    invalid = Verdict(
        rec(9), ev("user.updated", "z", 1, name="z"), Rejection(Reason.INVALID, "bad")
    )
    verdicts = [orphan("u", 1), orphan("u", 2), orphan("u", 3), orphan("v", 1), invalid]
    decided, parkings = choose_parked(
        verdicts, {"u": 1}, parked_rows=7, limits=ParkingLimits(per_user=3, rows=10)
    )
    results = [v.result for v in decided]
    # u had 1 parked: 2 more fit; v fits the 10th row; the invalid one is never parked.
    assert results[:4] == [Outcome.PARKED, Outcome.PARKED, NEVER_CREATED, Outcome.PARKED]
    assert results[4] == invalid.result
    assert [p.event.subject for p in parkings] == ["u", "u", "v"]


def test_an_event_parked_already_is_not_parked_again_nor_counted() -> None:
    again = orphan("u", 1)
    key = (again.event.source, again.event.id)
    decided, parkings = choose_parked(
        [again, again], {"u": 5}, 5, ParkingLimits(per_user=5, rows=5), already={key}
    )
    assert [v.result for v in decided] == [Outcome.PARKED, Outcome.DUPLICATE]
    assert parkings == []


def test_a_change_of_email_frees_the_old_one_even_unread() -> None:
    held = fold([ev("user.created", "a", 1, email="x@example.com")])
    assert held is not None
    moved = fold(
        [
            ev("user.created", "a", 1, email="x@example.com"),
            ev("user.updated", "a", 2, email="y@example.com"),
        ]
    )
    assert moved is not None
    owners: dict[str, str] = {}  # nobody asked who holds x@
    assert move_email(owners, held, moved) == "x@example.com"
    assert owners == {"y@example.com": "a"}
    # Back to its own email: nothing freed.
    assert move_email({"y@example.com": "a"}, moved, held) == "y@example.com"
    assert move_email({}, held, held) is None


def test_a_users_waiting_events_are_decided_together() -> None:
    # a's create claims x@, which b took after a gave it up (a's own next event): one at a
    # time, the create would wait for x@ and the change for the create.
    create = ev("user.created", "a", 1, email="x@example.com")
    change = ev("user.updated", "a", 2, email="y@example.com")
    planner = Planner({}, [], {"x@example.com": "b"}, ["x@example.com", "y@example.com"])
    verdicts = planner.decide_group([(rec(0), create), (rec(1), change)])
    assert [v.result for v in verdicts] == [Outcome.APPLIED, Outcome.APPLIED]
    assert planner.users["a"].email == "y@example.com"
    assert planner.owners == {"x@example.com": "b", "y@example.com": "a"}


def test_in_a_group_the_event_that_claims_a_held_email_waits_and_the_rest_follow() -> None:
    create = ev("user.created", "a", 1, email="x@example.com")
    rename = ev("user.updated", "a", 2, name="later")
    planner = Planner({}, [], {"x@example.com": "b"}, ["x@example.com"])
    verdicts = planner.decide_group([(rec(0), create), (rec(1), rename)])
    assert verdicts[0].result == email_conflict("b")
    # Without its create, the user does not exist: the rename waits for it.
    rename_result = verdicts[1].result
    assert isinstance(rename_result, Rejection) and rename_result.reason is Reason.UNKNOWN_USER
    assert planner.users == {} and planner.freed == set()


def test_decided_again_each_parked_event_heals_waits_goes_or_is_dropped() -> None:
    def parked(seq: int, rejection: Rejection) -> Parked:
        return Parked(rec(seq), ev("user.updated", "u", seq, name="n"), rejection, SINCE)

    conflict = email_conflict("b")
    entries = [parked(1, NEVER_CREATED), parked(2, NEVER_CREATED), parked(3, conflict)]
    entries.append(parked(4, NEVER_CREATED))
    entries.append(parked(5, NEVER_CREATED))
    results = [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
        conflict,  # the same wait: nothing to write
        email_conflict("c"),  # waits for something else now
        Rejection(Reason.USER_DELETED, "deleted"),
    ]
    verdicts = [Verdict(p.record, p.event, r) for p, r in zip(entries, results, strict=True)]
    decided = sort_decided(entries, verdicts)
    assert [p for _, p in decided.healed] == [entries[0]]
    assert decided.dropped == [entries[1]]
    assert [w.rejection for w in decided.waiting] == [email_conflict("c")]
    assert [(p, r.reason) for p, r in decided.released] == [(entries[4], Reason.USER_DELETED)]
    assert decided.done == [entries[0], entries[4], entries[1]]


def test_healing_follows_versions_not_arrival() -> None:
    late = Parked(rec(0), ev("user.updated", "u", 3, name="c"), NEVER_CREATED, SINCE)
    early = Parked(rec(1), ev("user.updated", "u", 2, name="b"), NEVER_CREATED, SINCE)
    assert healing_order([late, early]) == [early, late]


def test_a_parked_row_gives_back_the_record_and_the_rejection_it_was_parked_with() -> None:
    record = KafkaRecord(
        "t", 3, 42, 1_700_000_000_000, b"k", b"\x00value", (("h", b"\xff"), ("n", None))
    )
    event = ev("user.updated", "u", 2, email="Mixed@Example.com")
    rejection = email_conflict("b")
    parking = Parking(record, event, rejection)
    row = dict(zip(PARKED_COLUMNS, parking_row(parking), strict=True))
    assert row["waits_for_email"] == "mixed@example.com"
    assert parked_record(row) == record
    assert parked_rejection(row) == rejection


def test_an_event_postgresql_cannot_store_is_never_parked() -> None:
    # Parked, it would fail every batch that heals it; dead-lettered at once instead.
    unstorable = Verdict(rec(1), ev("user.updated", "u", 2, name="a\x00b"), NEVER_CREATED)
    decided, parkings = choose_parked([unstorable], {}, 0, ParkingLimits(per_user=5, rows=5))
    assert [v.result for v in decided] == [NEVER_CREATED] and parkings == []
