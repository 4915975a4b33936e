"""What became of one event: the question, its dead letters, the verdict, and how the
answer is shown. Pure: the reading is in ``lookup``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from user_events_schemas import (
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
)

from consumer.core.decode import AnyUserEvent
from consumer.core.identity import event_key
from consumer.core.projection import EventKey
from consumer.core.records import KafkaRecord, Rejection
from consumer.edges.store_lookup import LoggedEvent, ParkedEvent
from consumer.tools.display import utc_text
from consumer.tools.dlq.letters import (
    ErrorEntry,
    describe_errors,
    errors_of,
    failed_at,
    header,
    reason_of,
    redrive_count,
)
from consumer.tools.dlq.masking import mask_text
from consumer.tools.event.query import ByKey, ByPosition, Position, original_position
from consumer.tools.status.report import age_text

SHOWN_OTHERS = 5  # by position, the other dead letters of its id shown (the rest counted)
FOUND = ("applied", "stale", "duplicate", "parked", "dead_lettered")
_VERDICT_TEXT = {"dead_lettered": "dead-lettered", "not_found": "not found"}


@dataclass(frozen=True, slots=True)
class DeadLetterSeen:
    """A dead letter of the event, as its provenance headers tell."""

    partition: int
    offset: int
    reason: str
    error: str | None
    original: Position | None
    failed_at: datetime
    consumer_group: str | None
    redrive_count: int
    # The structured errors (``dlq.errors``): field paths and error kinds, no values.
    errors: list[ErrorEntry] | None = None

    @classmethod
    def of(cls, letter: KafkaRecord) -> DeadLetterSeen:
        error = header(letter.headers, DLQ_ERROR)
        return cls(
            letter.partition,
            letter.offset,
            reason_of(letter),
            mask_text(error) if error is not None else None,
            original_position(letter),
            failed_at(letter),
            header(letter.headers, DLQ_CONSUMER_GROUP),
            redrive_count(letter.headers),
            errors_of(letter.headers),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "error": self.error,
            "original": _position_json(self.original),
            "failed_at": _iso(self.failed_at),
            "consumer_group": self.consumer_group,
            "redrive_count": self.redrive_count,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class RecordSeen:
    """The record at the position asked, and what the consumer's decoder makes of it."""

    position: Position
    timestamp_ms: int
    decoded: AnyUserEvent | Rejection

    @property
    def key(self) -> EventKey | None:
        if isinstance(self.decoded, Rejection):
            return None
        return self.decoded.source, self.decoded.id

    def to_json(self, key: EventKey | None) -> dict[str, Any]:
        topic, partition, offset = self.position
        return {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": _iso(_from_ms(self.timestamp_ms)) if self.timestamp_ms >= 0 else None,
            "source": key[0] if key else None,
            "id": key[1] if key else None,
            "type": None if isinstance(self.decoded, Rejection) else self.decoded.type,
            "rejection": {"reason": str(self.decoded.reason), "error": self.decoded.error}
            if isinstance(self.decoded, Rejection)
            else None,
        }


def record_key(record: KafkaRecord, decoded: AnyUserEvent | Rejection) -> EventKey | None:
    """The event a record holds: as decoded, else as far as it can be read (a record the
    contract refuses may still name its source and id)."""
    if isinstance(decoded, Rejection):
        return event_key(record)
    return decoded.source, decoded.id


_ERASED_BY = {"event": "by the user's user.deleted", "request": "by an erase request"}


def waits_for(parked: ParkedEvent) -> dict[str, Any]:
    """What a parked event waits for, by its reason; never the email a conflict claims."""
    if parked.reason == "unknown_user":
        return {"what": "user_created", "user_id": parked.user_id}
    if parked.reason == "conflict":
        return {"what": "email_freed", "email_held_by": parked.email_held_by}
    return {"what": parked.reason}


def waits_for_text(parked: ParkedEvent) -> str:
    wait = waits_for(parked)
    if wait["what"] == "user_created":
        return f"the user's user.created (user id {parked.user_id})"
    if wait["what"] == "email_freed":
        holder = wait["email_held_by"]
        now = (
            f"held now by user {holder}"
            if holder is not None
            else "no active user holds it now: the next sweep heals it"
        )
        return f"its email to be freed by another active user ({now})"
    return str(wait["what"])


@dataclass(slots=True)
class EventAnswer:
    """Where the event is: the event log, the parked events (waiting for its user's create
    or its email), the dead-letter topic, the log and the topic both (dead-lettered, then
    redriven and applied), or none of them."""

    query: ByKey | ByPosition
    dlq_topic: str
    key: EventKey | None
    logged: LoggedEvent | None
    dead_letters: list[DeadLetterSeen] = field(default_factory=list)
    record: RecordSeen | None = None
    stored_offset: int | None = None  # the group's, on the partition asked by position
    parked: ParkedEvent | None = None

    @property
    def verdict(self) -> str:
        """applied, stale or duplicate (the log), parked (waiting in parked_events; a copy
        of a parked event is parked with it), dead_lettered, pending (a position the
        consumer has not reached), or not_found."""
        record, logged = self.record, self.logged
        decoded = record is None or record.key is not None
        if logged is not None and decoded:
            where = (logged.kafka_topic, logged.kafka_partition, logged.kafka_offset)
            return (
                "duplicate" if record is not None and where != record.position else logged.outcome
            )
        if self.parked is not None and decoded:
            return "parked"
        if record is not None:
            if any(letter.original == record.position for letter in self.dead_letters):
                return "dead_lettered"
            _, _, offset = record.position
            return (
                "pending"
                if self.stored_offset is None or offset >= self.stored_offset
                else "not_found"
            )
        return "dead_lettered" if self.dead_letters else "not_found"

    @property
    def complete(self) -> bool:
        """False when the event was not found (or not reached): the exit code is then 1."""
        return self.verdict in FOUND

    def to_json(self) -> dict[str, Any]:
        logged, parked = self.logged, self.parked
        return {
            "query": _query_json(self.query),
            "verdict": self.verdict,
            "found": self.complete,
            "source": self.key[0] if self.key else None,
            "id": self.key[1] if self.key else None,
            "record": self.record.to_json(self.key) if self.record else None,
            "stored_offset": self.stored_offset,
            "log": None
            if logged is None
            else {
                "outcome": logged.outcome,
                "user_id": logged.user_id,
                "type": logged.type,
                "time": _iso(logged.time),
                "sequence": logged.sequence,
                "kafka": _position_json(
                    (logged.kafka_topic, logged.kafka_partition, logged.kafka_offset)
                ),
                "recorded_at": _iso(logged.recorded_at),
                "personal_fields_erased": None
                if logged.erased_at is None
                else {"at": _iso(logged.erased_at), "by": logged.erased_by},
                "parked_at": None if logged.parked_at is None else _iso(logged.parked_at),
                "healed_after_seconds": logged.healed_after_seconds,
            },
            "parked": None
            if parked is None
            else {
                "reason": parked.reason,
                "user_id": parked.user_id,
                "waits_for": waits_for(parked),
                "parked_at": _iso(parked.parked_at),
                "parked_seconds": parked.parked_seconds,
                "kafka": _position_json(
                    (parked.kafka_topic, parked.kafka_partition, parked.kafka_offset)
                ),
            },
            "dlq_topic": self.dlq_topic,
            "dead_letters": [letter.to_json() for letter in self.dead_letters],
        }

    def render(self) -> str:
        lines = []
        if self.record is not None:
            lines.append(self._record_line(self.record))
        name = f"event {self.key[0]} {self.key[1]}" if self.key else "this record"
        lines.append(f"{name}: {_VERDICT_TEXT.get(self.verdict, self.verdict)}")
        if (logged := self.logged) is not None:
            where = _where((logged.kafka_topic, logged.kafka_partition, logged.kafka_offset))
            lines.append(
                f"  event log: {logged.outcome}, user {logged.user_id}, {logged.type}, "
                f"from {where}, recorded {_iso(logged.recorded_at)}"
            )
            if logged.parked_at is not None and logged.healed_after_seconds is not None:
                lines.append(
                    f"  healed after {age_text(logged.healed_after_seconds)}: parked at "
                    f"{_iso(logged.parked_at)} until what it waited for landed"
                )
            if logged.erased_at is not None:
                lines.append(
                    f"  personal fields: erased at {_iso(logged.erased_at)} "
                    f"({_ERASED_BY.get(logged.erased_by or '', logged.erased_by)})"
                )
        else:
            lines.append("  event log: not there")
        if (parked := self.parked) is not None:
            where = _where((parked.kafka_topic, parked.kafka_partition, parked.kafka_offset))
            lines.append(
                f"  parked: {parked.reason}, user {parked.user_id}, from {where}, parked at "
                f"{_iso(parked.parked_at)} ({age_text(parked.parked_seconds)} ago)"
            )
            lines.append(f"  waits for {waits_for_text(parked)}")
        own, others = self._letters_split()
        lines += [f"  {self._letter_line(letter)}" for letter in own]
        if others and self.record is not None:
            # By position: the record's own letters lead; others of its id are a count
            # and a few (a publisher that reuses an id can have hundreds).
            lines.append(
                f"  {len(others)} other dead letter{'s' if len(others) != 1 else ''} "
                "with its source and id:"
            )
            lines += [f"    {self._letter_line(letter)}" for letter in others[:SHOWN_OTHERS]]
            if (more := len(others) - SHOWN_OTHERS) > 0:
                assert self.key is not None  # others share its key
                lines.append(
                    f"    and {more} more (event --source {self.key[0]} --id {self.key[1]} "
                    "lists them all)"
                )
        else:
            lines += [f"  {self._letter_line(letter)}" for letter in others]
        if not self.dead_letters:
            lines.append(f"  dead letters in {self.dlq_topic}: none")
        if self.verdict == "pending":
            stored = "nothing" if self.stored_offset is None else f"offset {self.stored_offset}"
            lines.append(f"  the consumer has not reached it yet (stored: {stored})")
        return "\n".join(lines)

    def _letters_split(self) -> tuple[list[DeadLetterSeen], list[DeadLetterSeen]]:
        """The dead letters of the record asked by position, and the others (all of them
        are "others" when asked by source and id)."""
        if self.record is None:
            return [], self.dead_letters
        position = self.record.position
        own = [letter for letter in self.dead_letters if letter.original == position]
        return own, [letter for letter in self.dead_letters if letter.original != position]

    def _letter_line(self, letter: DeadLetterSeen) -> str:
        original = _where(letter.original) if letter.original else "an unknown position"
        return (
            f"dead letter {self.dlq_topic} {letter.partition}:{letter.offset}: "
            f"{letter.reason} ({letter.error or 'no error given'}), from {original}, "
            f"failed at {_iso(letter.failed_at)}"
            + (f", redriven {letter.redrive_count} times before" if letter.redrive_count else "")
            + (f"; errors: {describe_errors(letter.errors)}" if letter.errors else "")
        )

    def _record_line(self, record: RecordSeen) -> str:
        decoded = record.decoded
        if isinstance(decoded, Rejection):
            what = f"refused as {decoded.reason}: {decoded.error}"
        else:
            what = f"{decoded.type} for user {decoded.subject}"
        return f"record {_where(record.position)}: {what}"


def _query_json(query: ByKey | ByPosition) -> dict[str, Any]:
    if isinstance(query, ByKey):
        return {"source": query.source, "id": query.event_id}
    return {"topic": query.topic, "partition": query.partition, "offset": query.offset}


def _position_json(position: Position | None) -> dict[str, Any] | None:
    if position is None:
        return None
    topic, partition, offset = position
    return {"topic": topic, "partition": partition, "offset": offset}


def _where(position: Position) -> str:
    topic, partition, offset = position
    return f"{topic} {partition}:{offset}"


def _from_ms(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def _iso(moment: datetime) -> str:
    return utc_text(moment, "milliseconds")
