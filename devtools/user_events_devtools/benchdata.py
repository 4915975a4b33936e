"""The benchmark's data set: a reproducible mix of user events, duplicates and poison. Pure."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from user_events_schemas import build_event, structured_record

KafkaMessage = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

# The mix: 20% created, 65% updated, 5% deleted, 7% duplicates, 3% poison.
MIX = (
    ("created", 0.20),
    ("updated", 0.65),
    ("deleted", 0.05),
    ("duplicate", 0.07),
    ("poison", 0.03),
)


def bench_messages(
    total: int, users: int, seed: int = 1, traceparents: bool = False, early: float = 0.0
) -> Iterator[KafkaMessage]:
    """``total`` Kafka messages over ``users`` users, keyed by user id; with
    ``traceparents``, each event carries a trace context of its own (the CloudEvents
    distributed-tracing extension), as from a publisher that traces. With ``early``, that
    share of the messages are updates published right before their user's create, under
    another key (so, most often, in another partition): what parking heals."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    sequence: dict[int, int] = {}
    alive: list[int] = []
    alive_index: dict[int, int] = {}
    never_created = list(range(users))
    rng.shuffle(never_created)
    recent: list[KafkaMessage] = []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    early_per_create = early / dict(MIX)["created"]
    emitted = 0
    n = -1
    while emitted < total:
        n += 1
        emitted += 1
        kind = rng.choices(kinds, weights)[0]
        when = t0 + timedelta(milliseconds=n)
        if kind == "duplicate" and recent:
            yield recent[rng.randrange(len(recent))]
            continue
        if kind == "poison":
            yield _poison(rng, n)
            continue
        if kind in ("updated", "deleted", "duplicate") and not alive:
            kind = "created"
        if kind == "created" and not never_created:
            kind = "updated"
        early_for = None
        if (
            kind == "created"
            and early
            and emitted < total
            and never_created[-1] not in sequence  # a first life: see docs/parking.md
            and rng.random() < early_per_create
        ):
            # The user the create below makes; the update is the version after it. (An
            # update that comes before a deleted user's re-create is dead-lettered, as
            # user_deleted: not what this mix measures.)
            early_for = never_created[-1]
            _, value, headers = structured_record(
                build_event(
                    "user.updated",
                    f"u{early_for}",
                    {"name": f"User {early_for} early"},
                    source="/bench",
                    sequence=sequence.get(early_for, 0) + 2,
                    event_id=f"e{n}-early",
                    time=when,
                )
            )
            emitted += 1
            yield f"early-u{early_for}".encode(), value, headers
        if kind == "created":
            user = never_created.pop()
            alive_index[user] = len(alive)
            alive.append(user)
            data: dict[str, str] | None = {
                "email": f"u{user}@bench.example",
                "name": f"User {user}",
            }
            event_type = "user.created"
        else:
            user = alive[rng.randrange(len(alive))]
            if kind == "deleted":
                _remove(alive, alive_index, user)
                never_created.insert(rng.randrange(len(never_created) + 1), user)  # may return
                data, event_type = None, "user.deleted"
            else:
                data, event_type = {"name": f"User {user} #{n}"}, "user.updated"
        sequence[user] = sequence.get(user, 0) + 1
        event = build_event(
            event_type,
            f"u{user}",
            data,
            source="/bench",
            sequence=sequence[user],
            event_id=f"e{n}",
            time=when,
        )
        if user == early_for:
            sequence[user] += 1  # the early update took the next one
        if traceparents:
            event["traceparent"] = f"00-{n + 1:032x}-{n + 1:016x}-01"
        message = structured_record(event)
        if len(recent) < 1000:
            recent.append(message)
        else:
            recent[rng.randrange(1000)] = message
        yield message


def _remove(alive: list[int], index: dict[int, int], user: int) -> None:
    at = index.pop(user)
    last = alive.pop()
    if last != user:
        alive[at] = last
        index[last] = at


def _poison(rng: random.Random, n: int) -> KafkaMessage:
    if n % 2:
        return b"poison", b"{this is not json", []
    return (
        b"poison",
        json.dumps({"specversion": "1.0", "type": "user.unknown", "id": f"p{n}"}).encode(),
        [],
    )
