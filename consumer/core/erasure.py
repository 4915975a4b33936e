"""Erasure's rules: whose personal data a batch erases, and which of its log rows are
written without personal values. Pure.

A person's email and name are personal data; every other part of an event (source, id,
type, time, sequence, subject, provenance) is the audit trail and stays. An applied
``user.deleted`` erases its user: the ``users`` row loses email and name (the
projection's tombstone), and every log row of that user loses its personal values, in
the same transaction. An event of a deleted user that comes later (a stale one) is
logged without them, so nothing brings them back.

An erased payload keeps its personal keys with null values, so that it still says which
fields the event carried (the SQL function ``user_events_erased`` applies the same rule
to rows already written).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from user_events_schemas.models import PERSONAL_FIELDS, UserDeleted

from consumer.core.decode import AnyUserEvent, decode
from consumer.core.ordering import UserState, Verdict
from consumer.core.records import KafkaRecord, Outcome, Rejection

# The source of the tombstones ``erase`` writes for requests from outside Kafka.
ERASE_REQUEST_SOURCE = "urn:user-events-consumer:erase"
_DELETED = "user.deleted"
_NO_LIMIT = 2**62  # a logged payload was accepted once: its size is not in question


def holds_personal(data: Mapping[str, Any] | None) -> bool:
    """Whether a payload's ``data`` still holds a personal value."""
    return data is not None and any(data.get(k) is not None for k in PERSONAL_FIELDS)


def erasing_deletes(verdicts: Iterable[Verdict]) -> dict[str, Verdict]:
    """Per user, the last applied ``user.deleted`` of a batch: the users it erases."""
    return {
        v.event.subject: v
        for v in verdicts
        if v.result is Outcome.APPLIED and v.event.type == _DELETED
    }


def without_personal(verdicts: Sequence[Verdict], states: Mapping[str, UserState]) -> set[int]:
    """Indexes of the logged ``verdicts`` to write without personal values: those of a user
    erased by a delete at or after them in the batch, and those that found their user
    deleted (a late, stale event of an erased user). ``states`` are the users as the batch
    found them."""
    deleted = {u for u, state in states.items() if state.status == "deleted"}
    last_delete = {
        v.event.subject: i
        for i, v in enumerate(verdicts)
        if v.result is Outcome.APPLIED and v.event.type == _DELETED
    }
    if not deleted and not last_delete:
        return set()  # the common batch: nobody deleted, nothing to leave out
    scrubbed: set[int] = set()
    for i, verdict in enumerate(verdicts):
        user = verdict.event.subject
        if verdict.result is Outcome.APPLIED:
            if verdict.event.type == _DELETED:
                deleted.add(user)
            else:
                deleted.discard(user)
        if user in deleted or i <= last_delete.get(user, -1):
            scrubbed.add(i)
    return scrubbed


def rows_erased(verdicts: Sequence[Verdict], scrubbed: Collection[int]) -> Counter[str]:
    """Per user, the rows among ``verdicts`` written without the personal values they
    carried: what an erasure in the same batch reached before they were written."""
    return Counter(
        v.event.subject
        for i, v in enumerate(verdicts)
        if i in scrubbed and v.event.data is not None and holds_personal(v.event.data.__dict__)
    )


def request_tombstone(
    user_id: str, request_id: str, now: datetime, state: UserState | None
) -> UserDeleted:
    """The ``user.deleted`` an erasure request applies to ``user_id``: newer than anything
    the user holds, so it applies, and dated now (or just after the user's latest version,
    when a publisher's clock ran ahead), so that every event published before the request
    is older than it."""
    time = now
    if state is not None:
        # Compared by time wherever one side lacks a sequence, as this version does.
        latest = max(state.status_version.time, state.email_version.time, state.name_version.time)
        if latest >= time:
            time = latest + timedelta(microseconds=1)
    return UserDeleted.model_validate(
        {
            "specversion": "1.0",
            "type": _DELETED,
            "source": ERASE_REQUEST_SOURCE,
            "id": request_id,
            "subject": user_id,
            "time": time.isoformat(),
        }
    )


# Stand-ins that pass the contract's checks while an erased row is decoded; they are
# replaced by None before anything sees them.
_STAND_INS = {"email": "erased@example.com", "name": "erased"}


def decode_logged(record: KafkaRecord) -> AnyUserEvent | Rejection:
    """A log row's payload (as a record) back into its event. An erased row's personal
    values come back as None: the event still writes the registers it wrote, with
    nothing in them, as the delete that erased it left them."""
    event = decode(record, _NO_LIMIT)
    if not isinstance(event, Rejection) or record.value is None:
        return event
    payload = orjson.loads(record.value)
    data = payload.get("data")
    if not isinstance(data, dict):
        return event
    erased = [k for k in PERSONAL_FIELDS if k in data and data[k] is None]
    if not erased:
        return event
    payload["data"] = {**data, **{k: _STAND_INS[k] for k in erased}}
    stood_in = decode(record._replace(value=orjson.dumps(payload)), _NO_LIMIT)
    if isinstance(stood_in, Rejection) or stood_in.data is None:
        return event
    without = stood_in.data.model_copy(update=dict.fromkeys(erased))
    return stood_in.model_copy(update={"data": without})
