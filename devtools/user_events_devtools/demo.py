"""A stream of demo user events: valid ones, duplicates, out-of-order ones and poison."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from user_events_schemas import binary_record, build_event, structured_record

KafkaMessage = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

DEMO_SOURCE = "/demo-publisher"


def demo_messages(rng: random.Random, users: int = 200) -> Iterator[KafkaMessage]:
    """Endless Kafka messages (key, value, headers) exercising every path of the consumer."""
    sequence: dict[str, int] = {}
    alive: set[str] = set()
    clock = datetime.now(UTC)
    recent: list[KafkaMessage] = []
    while True:
        clock += timedelta(milliseconds=rng.randint(1, 50))
        user = f"user-{rng.randrange(users)}"
        roll = rng.random()
        if roll < 0.05 and recent:
            yield rng.choice(recent)  # a duplicate: redelivered as is
            continue
        if roll < 0.08:
            yield _poison(rng, user)
            continue
        seq = sequence.get(user, 0) + 1
        sequence[user] = seq
        if user not in alive:
            kind, data = "user.created", {"email": f"{user}@example.com", "name": f"User {user}"}
            alive.add(user)
        elif roll < 0.12:
            kind, data = "user.deleted", {}
            alive.discard(user)  # the next event for this user re-creates it
        else:
            kind, data = "user.updated", {"name": f"User {user} v{seq}"}
        event = build_event(kind, user, data, source=DEMO_SOURCE, sequence=seq, time=clock)
        to_record = binary_record if rng.random() < 0.3 else structured_record
        message: KafkaMessage = to_record(event)
        recent = [*recent[-50:], message]
        yield message


def _poison(rng: random.Random, user: str) -> KafkaMessage:
    """A record the consumer dead-letters (or parks: the ghost's update), each with an id
    of its own, as a real publisher's would be: ``event`` then finds that one, not all."""
    choice = rng.randrange(4)
    event_id = str(uuid.uuid4())
    if choice == 0:
        return user.encode(), f"not json at all (demo poison {event_id})".encode(), []
    if choice == 1:
        renamed = {"specversion": "1.0", "id": event_id, "source": DEMO_SOURCE}
        return user.encode(), json.dumps({**renamed, "type": "user.renamed"}).encode(), []
    if choice == 2:
        bad = {
            "specversion": "1.0",
            "id": event_id,
            "source": DEMO_SOURCE,
            "type": "user.created",
            "subject": user,
            "time": "yesterday",
            "data": {"email": "nope"},
        }
        return user.encode(), json.dumps(bad).encode(), []
    ghost = f"ghost-{rng.randrange(10**6)}"
    event = build_event(
        "user.updated", ghost, {"name": "Nobody"}, source=DEMO_SOURCE, event_id=event_id
    )
    return structured_record(event)
