"""Erasure's rules: whom a batch erases, which key seals each logged event's personal
values, and the tombstone of a request. Pure (a new key is asked of the caller).

A person's email and name are personal data; every other part of an event (source, id,
type, time, sequence, subject, provenance) is the audit trail and stays. The log keeps
personal values only sealed with their user's key (``consumer.core.sealing``). An
applied ``user.deleted`` erases its user: the ``users`` row loses email, name and key,
so every log row sealed with that key becomes unreadable, without touching one (rows
from before keys existed are nulled in place). An event of a deleted user that comes
later (a stale one) is logged without its personal values, as every stale event is, so
nothing brings them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from user_events_schemas import PERSONAL_FIELDS, UserDeleted

from consumer.core.batchplan import Verdict
from consumer.core.decode import AnyUserEvent, decode
from consumer.core.projection import UserState
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.sealing import unseal

# The source of the tombstones ``erase`` writes for requests from outside Kafka.
ERASE_REQUEST_SOURCE = "urn:user-events-consumer:erase"
_DELETED = "user.deleted"
_NO_LIMIT = 2**62  # a logged payload was accepted once: its size is not in question


def erasing_deletes(verdicts: Iterable[Verdict]) -> dict[str, Verdict]:
    """Per user, the last applied ``user.deleted`` of a batch: the users it erases."""
    return {
        v.event.subject: v
        for v in verdicts
        if v.event.type == _DELETED and v.result is Outcome.APPLIED
    }


def sealing_keys(
    verdicts: Sequence[Verdict], keys: Mapping[str, bytes | None], new_key: Callable[[], bytes]
) -> tuple[list[bytes | None], dict[str, bytes | None]]:
    """Per logged verdict, in order, the key that seals its personal values (None: they
    are not written); and each user's key after the batch.

    ``keys`` are the users' keys as the batch found them (absent or None: no key). An
    applied ``user.deleted`` destroys the key, so that the rows it sealed, this batch's
    included, are erased with it. An applied event of a user without a key (a new user,
    or one created again after a delete) gets a new one. A stale event is logged without
    its personal values, whoever its user is now.
    """
    current = dict(keys)
    sealed_with: list[bytes | None] = []
    for verdict in verdicts:
        user = verdict.event.subject
        if verdict.result is not Outcome.APPLIED:
            # A stale event changed nothing, and may be of an earlier life of the user
            # (before a delete and a new create): sealed with today's key, it would bring
            # an erased value back. Its values stay in its Kafka record only.
            sealed_with.append(None)
            continue
        if verdict.event.type == _DELETED:
            current[user] = None
        elif current.get(user) is None:
            current[user] = new_key()
        sealed_with.append(current.get(user))
    return sealed_with, current


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


def personal_of(
    payload: Mapping[str, Any], sealed: bytes | None, key: bytes | None
) -> dict[str, Any] | None:
    """The personal values a log row holds that ``key`` can read: ``sealed`` (its
    ``personal`` column) if the key opens it, or plain ones in its payload (rows from
    before keys); None when it holds none readable (an event without any, or erased)."""
    if sealed is not None:
        subject = payload.get("subject")
        return unseal(key, subject, sealed) if isinstance(subject, str) else None
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    plain = {k: data[k] for k in PERSONAL_FIELDS if data.get(k) is not None}
    return plain or None


def was_erased(payload: Mapping[str, Any], sealed: bytes | None, key: bytes | None) -> bool:
    """Whether a log row carried personal values that can no longer be read."""
    data = payload.get("data")
    carried = isinstance(data, dict) and any(k in data for k in PERSONAL_FIELDS)
    return carried and personal_of(payload, sealed, key) is None


# Stand-ins that pass the contract's checks while an erased row is decoded; they are
# replaced by None before anything sees them.
_STAND_INS = {"email": "erased@example.com", "name": "erased"}


def decode_logged(
    record: KafkaRecord, sealed: bytes | None, keys: Mapping[str, bytes | None]
) -> AnyUserEvent | Rejection:
    """A log row (its payload as a record, and its sealed personal values) back into its
    event, the values opened with its user's key in ``keys``. An erased row's come back
    as None: the event still writes the registers it wrote, with nothing in them, as the
    delete that erased it left them."""
    payload = orjson.loads(record.value or b"null")
    if not isinstance(payload, dict) or not isinstance(data := payload.get("data"), dict):
        return decode(record, _NO_LIMIT)
    subject = payload.get("subject")
    personal = personal_of(payload, sealed, keys.get(subject) if isinstance(subject, str) else None)
    erased = [k for k in PERSONAL_FIELDS if k in data and not (personal and k in personal)]
    payload["data"] = {**data, **(personal or {}), **{k: _STAND_INS[k] for k in erased}}
    event = decode(record._replace(value=orjson.dumps(payload)), _NO_LIMIT)
    if not erased or isinstance(event, Rejection) or event.data is None:
        return event
    without = event.data.model_copy(update=dict.fromkeys(erased))
    return event.model_copy(update={"data": without})
