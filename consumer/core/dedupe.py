"""Which events of a batch must be looked up in the event log to be told duplicates. Pure.

A duplicate is an event whose (source, id) key is already logged. Looking up every key
of every batch would cost a join per batch against the whole log; these rules name the
few that can be logged, and the store looks up only those.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from consumer.core.batchplan import BatchPlan
from consumer.core.decode import AnyUserEvent
from consumer.core.projection import EventKey, UserState, Version
from consumer.core.records import KafkaRecord, Rejection


def possibly_logged(
    accepted: Iterable[tuple[KafkaRecord, AnyUserEvent]], states: Mapping[str, UserState]
) -> list[tuple[KafkaRecord, AnyUserEvent]]:
    """The events that may already be in the event log: those not newer than their
    user's latest version. Most of a live batch is newer, and is not looked up.

    An event is logged only when it applied (its version then went into a register) or
    was stale (not newer than a register it would write), and registers only move
    forward: so every logged event of a user is at most the user's latest version, and
    a user without a row has none. What this misses (a key reused for another subject;
    versions that are not totally ordered, where publishers mix events with and without
    ``sequence``; a state left by an older rule) is caught later: an event planned as
    applied or stale hits the log's primary key, and the batch is redone record by
    record, looking up every key; an event planned as a rejection is looked up then.

    The log is partitioned by day, and its primary key holds within a day only: across
    days, this rule is what keeps a redelivery from being logged twice. It names every
    redelivery of a user's events whose versions are totally ordered (all with
    ``sequence``, or all without), and the registers outlive the log's retention, so a
    redelivery after its day was pruned is stale, not applied.
    """
    latest: dict[str, Version] = {}
    maybe: list[tuple[KafkaRecord, AnyUserEvent]] = []
    for entry in accepted:
        event = entry[1]
        state = states.get(event.subject)
        if state is None:
            continue
        if (newest := latest.get(event.subject)) is None:
            newest = latest[event.subject] = state.latest_version
        sequence = event.sequence
        if sequence is not None and newest.sequence is not None and sequence != newest.sequence:
            # ``is_newer_than``'s first rule, without building the event's Version.
            if sequence < newest.sequence:
                maybe.append(entry)
        elif not Version.of(event).is_newer_than(newest):
            maybe.append(entry)
    return maybe


def rejected_unchecked(plan: BatchPlan, looked_up: Collection[EventKey]) -> list[EventKey]:
    """Keys of the events ``plan`` rejects that are not among the keys ``looked_up`` in
    the event log.

    A duplicate ``possibly_logged`` did not name is caught by the log's primary key when
    it plans as applied or stale; one that plans as a rejection is not, so these keys
    are looked up too (few) and the batch planned again if any is logged. This is the
    one read that must follow a plan: which events are rejected is the plan's answer.
    """
    return [
        key
        for verdict in plan.verdicts
        if isinstance(verdict.result, Rejection)
        and (key := (verdict.event.source, verdict.event.id)) not in looked_up
    ]
