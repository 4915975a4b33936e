"""Parking: which rejections wait instead of being dead-lettered, and what becomes of a
parked event when it is decided again. Pure.

Two rejections are often a matter of order across partitions, not a bad event: an update
whose user's create has not been applied yet (``unknown_user``), and an email another
active user still holds while its change or delete waits in another partition
(``conflict``). Such an event is parked, and decided again when a batch changes its user
or frees its email. Because every register is last-writer-wins, deciding it late gives
the state deciding it in order would have (docs/parking.md).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import orjson
from user_events_schemas import is_storable

from consumer.core.batchplan import Verdict
from consumer.core.decode import AnyUserEvent
from consumer.core.projection import Version
from consumer.core.records import FieldError, KafkaRecord, Outcome, Reason, Rejection
from consumer.core.rows import Row

PARKABLE = (Reason.UNKNOWN_USER, Reason.CONFLICT)
"""The reasons an event is parked for, in the order metrics and reports show them."""
PARKED_REASONS = tuple(str(reason) for reason in PARKABLE)


class ParkingLimits(NamedTuple):
    """``PARK_MAX_PER_USER`` and ``PARK_MAX_ROWS``."""

    per_user: int
    rows: int


class Parking(NamedTuple):
    """An event to park (or one parked, decided again and still waiting)."""

    record: KafkaRecord
    event: AnyUserEvent
    rejection: Rejection

    @property
    def waits_for_email(self) -> str | None:
        """The lower-cased email a conflict waits to be freed; None for ``unknown_user``."""
        if self.rejection.reason is not Reason.CONFLICT:
            return None
        email = getattr(self.event.data, "email", None)
        return email.lower() if email else ""


class Parked(NamedTuple):
    """A parked event as read back: the record as fetched, decoded again."""

    record: KafkaRecord
    event: AnyUserEvent
    rejection: Rejection
    parked_at: datetime


def parkable(verdict: Verdict) -> bool:
    result = verdict.result
    return isinstance(result, Rejection) and result.reason in PARKABLE


def choose_parked(
    verdicts: Sequence[Verdict],
    parked_per_user: Mapping[str, int],
    parked_rows: int,
    limits: ParkingLimits,
    already: Collection[tuple[str, str]] = (),
) -> tuple[list[Verdict], list[Parking]]:
    """``verdicts`` with each parkable rejection turned ``PARKED`` while the limits allow
    (``parked_per_user`` and ``parked_rows``: what is parked already), and what to park.
    Past a limit, a rejection stays one: it is dead-lettered at once, as without parking.
    An event parked ``already`` (a replay, a redelivery) is ``PARKED`` and not parked
    again; a second copy of an event in the batch is a duplicate."""
    per_user = dict(parked_per_user)
    rows = parked_rows
    parked_keys: set[tuple[str, str]] = set()
    decided: list[Verdict] = []
    parkings: list[Parking] = []
    for verdict in verdicts:
        if not parkable(verdict):
            decided.append(verdict)
            continue
        event = verdict.event
        key = (event.source, event.id)
        if key in parked_keys:
            decided.append(verdict._replace(result=Outcome.DUPLICATE))
            continue
        if key in already:
            parked_keys.add(key)
            decided.append(verdict._replace(result=Outcome.PARKED))
            continue
        user_count = per_user.get(event.subject, 0)
        if user_count >= limits.per_user or rows >= limits.rows or not is_storable(event):
            # Past a bound; or an event PostgreSQL cannot store (a U+0000 in a text), which
            # parked would fail every batch that heals it: dead-lettered at once.
            decided.append(verdict)
            continue
        assert isinstance(verdict.result, Rejection)
        per_user[event.subject] = user_count + 1
        rows += 1
        parked_keys.add(key)
        parkings.append(Parking(verdict.record, event, verdict.result))
        decided.append(verdict._replace(result=Outcome.PARKED))
    return decided, parkings


def healing_order(parked: Iterable[Parked]) -> list[Parked]:
    """Parked events in the order they are decided again: their versions'."""
    return sorted(parked, key=_version_key)


def _version_key(parked: Parked) -> tuple[object, ...]:
    version = Version.of(parked.event)
    return (version.sequence is None, version.sequence or 0, version.time, version[2:])


class Decided(NamedTuple):
    """What deciding parked events again did: events healed (applied or stale, logged with
    when they were parked), events still waiting (their rejection may have changed),
    events to dead-letter now (a reason that cannot heal), and events already logged."""

    healed: list[tuple[Verdict, Parked]]
    waiting: list[Parking]
    released: list[tuple[Parked, Rejection]]
    dropped: list[Parked]

    @property
    def done(self) -> list[Parked]:
        """The parked rows that go: healed, released or dropped."""
        return [
            *(p for _, p in self.healed),
            *(p for p, _ in self.released),
            *self.dropped,
        ]


def sort_decided(parked: Sequence[Parked], verdicts: Sequence[Verdict]) -> Decided:
    """Sort the verdicts on parked events decided again (``verdicts[i]`` is ``parked[i]``'s)."""
    decided = Decided([], [], [], [])
    for entry, verdict in zip(parked, verdicts, strict=True):
        result = verdict.result
        if result is Outcome.APPLIED or result is Outcome.STALE:
            decided.healed.append((verdict, entry))
        elif result is Outcome.DUPLICATE:
            decided.dropped.append(entry)
        elif isinstance(result, Rejection) and result.reason in PARKABLE:
            if result != entry.rejection:
                decided.waiting.append(Parking(entry.record, entry.event, result))
        else:
            assert isinstance(result, Rejection)
            decided.released.append((entry, result))
    return decided


# The parked_events row and the record it holds, both ways.

PARKED_COLUMNS = (
    "source",
    "event_id",
    "user_id",
    "reason",
    "waits_for_email",
    "error",
    "errors",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "kafka_key",
    "kafka_value",
    "header_names",
    "header_values",
)


def parking_row(parking: Parking) -> tuple[object, ...]:
    """``parking`` as a ``parked_events`` row, in ``PARKED_COLUMNS`` order."""
    record, event, rejection = parking
    return (
        event.source,
        event.id,
        event.subject,
        str(rejection.reason),
        parking.waits_for_email,
        rejection.error,
        rejection_errors_json(rejection),
        record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms,
        record.key,
        record.value,
        [name for name, _ in record.headers],
        [value for _, value in record.headers],
    )


def rejection_errors_json(rejection: Rejection) -> str:
    return orjson.dumps(
        [
            {"loc": e.loc, "type": e.type, **({"user_id": e.user_id} if e.user_id else {})}
            for e in rejection.errors
        ]
    ).decode()


def parked_record(row: Row) -> KafkaRecord:
    """The record a ``parked_events`` row holds, as it was fetched."""
    return KafkaRecord(
        row["kafka_topic"],
        row["kafka_partition"],
        row["kafka_offset"],
        row["kafka_timestamp"],
        row["kafka_key"],
        row["kafka_value"],
        tuple(zip(row["header_names"], row["header_values"], strict=True)),
    )


NOT_STORABLE = Rejection(
    Reason.INVALID,
    "not storable: a text value holds U+0000",
    errors=(FieldError("", "not_storable"),),
)
"""Why a parked event that PostgreSQL cannot store is dead-lettered when read back."""


def parked_rejection(row: Row) -> Rejection:
    """The rejection a ``parked_events`` row was parked with."""
    errors = tuple(
        FieldError(e["loc"], e["type"], e.get("user_id")) for e in orjson.loads(row["errors"])
    )
    return Rejection(Reason(row["reason"]), row["error"], errors=errors)
