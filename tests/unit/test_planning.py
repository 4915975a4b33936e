"""A batch's plan from one read: what the read must name, and the one question a plan
can send back to the database. Pure."""

from __future__ import annotations

from consumer.core.planning import Snapshot, plan_read, unchecked_keys
from consumer.core.records import Outcome, Reason, Rejection
from tests.factories import accepted, created


def snapshot(**read: object) -> Snapshot:
    empty: dict[str, object] = {
        "states": {},
        "data_keys": {},
        "emails": [],
        "email_owners": {},
        "looked_up": frozenset(),
        "logged": (),
        "any_parked": False,
    }
    return Snapshot(**(empty | read))  # type: ignore[arg-type]


def test_a_rejected_event_not_looked_up_is_asked_about_then_told_a_duplicate() -> None:
    # A create whose email another user holds is a conflict; its key was not looked up
    # (its user has no row), yet an earlier delivery of it may be logged.
    batch = [accepted(created("u1", 1, email="held@example.com", event_id="e1"))]
    read = snapshot(emails=["held@example.com"], email_owners={"held@example.com": "u2"})
    plan, _ = plan_read(batch, read)
    (result,) = [v.result for v in plan.verdicts]
    assert isinstance(result, Rejection) and result.reason is Reason.CONFLICT
    assert unchecked_keys(plan, read) == [("/tests", "e1")]

    told = read.knowing_logged([("/tests", "e1")], [("/tests", "e1")])
    plan, _ = plan_read(batch, told)
    assert [v.result for v in plan.verdicts] == [Outcome.DUPLICATE]
    assert unchecked_keys(plan, told) == []


def test_a_plan_asks_nothing_when_nothing_is_rejected_or_its_keys_were_looked_up() -> None:
    batch = [accepted(created("u1", 1, event_id="e1"))]
    plan, planner = plan_read(batch, snapshot())
    assert [v.result for v in plan.verdicts] == [Outcome.APPLIED]
    assert set(planner.users) == {"u1"}
    assert unchecked_keys(plan, snapshot()) == []

    # Every key looked up (the record-by-record redo): a rejection asks nothing either.
    read = snapshot(email_owners={"u1@example.com": "u9"}, looked_up=frozenset({("/tests", "e1")}))
    plan, _ = plan_read(batch, read)
    assert isinstance(plan.verdicts[0].result, Rejection)
    assert unchecked_keys(plan, read) == []
