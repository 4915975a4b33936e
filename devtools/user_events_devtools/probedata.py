"""What the limit probe writes: the rows the service writes for the bench's data set,
built in advance with the service's own decisions, sealing and row mapping, so that the
probe's timed writes measure PostgreSQL's side alone. Pure, but for the random bytes
keys and seals take.

The records are placed as the bench's producer placed them (its default partitioner on
each key, offsets counted per partition) and decided a batch at a time, each partition's
batches in turn, as the service's batches (one partition each, nearly always) are. The
probe plans without parking: with ``--early-updates``, the events the service parks and
heals are rejected here, and left out of the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from consumer.core.batchplan import BatchPlan, Planner, claimed_emails
from consumer.core.erasure import sealing_keys
from consumer.core.projection import EventKey, UserState
from consumer.core.records import KafkaRecord
from consumer.core.rows import USER_COLUMNS, event_rows, user_rows
from consumer.core.sealing import Sealer, new_key
from consumer.pipeline.batches import Accepted, split_batch
from user_events_devtools.benchdata import bench_messages


@dataclass(frozen=True, slots=True)
class BatchRows:
    """What the service writes for one batch: its rows of ``user_events`` (in
    ``EVENT_COLUMNS`` order) and of ``users`` (in ``USER_COLUMNS`` order)."""

    log: list[tuple[Any, ...]]
    users: list[tuple[Any, ...]]


def topic_records(
    topic: str,
    partitions: int,
    total: int,
    users: int,
    traceparents: bool = False,
    early: float = 0.0,
) -> dict[int, list[KafkaRecord]]:
    """The data set ``preload`` publishes with these arguments, per partition, each record
    where the producer put it (keys are never null in it, so the partition is the key's)."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    placed: dict[int, list[KafkaRecord]] = {p: [] for p in every}
    for key, value, headers in bench_messages(total, users, traceparents=traceparents, early=early):
        partition = partitioner(key, every, every)
        records = placed[partition]
        records.append(KafkaRecord(topic, partition, len(records), 0, key, value, tuple(headers)))
    return placed


def in_batches(
    placed: Mapping[int, Sequence[KafkaRecord]], batch_size: int
) -> Iterator[Sequence[KafkaRecord]]:
    """Each partition's records in batches of ``batch_size``, one batch of each partition
    in turn: two batches side by side are of different partitions, as in the service."""
    per_partition = [
        [records[at : at + batch_size] for at in range(0, len(records), batch_size)]
        for _, records in sorted(placed.items())
    ]
    for turn in zip_longest(*per_partition):
        yield from (batch for batch in turn if batch is not None)


@dataclass(frozen=True, slots=True)
class DecidedBatch:
    """One batch decided as the service decides it, with what each step took and gave."""

    records: Sequence[KafkaRecord]
    accepted: Accepted
    states_before: dict[str, UserState]  # its users' states as the batch found them
    read_rows: list[dict[str, Any]]  # the same, as the users rows the read returns
    logged_keys: list[EventKey]  # of its events, those logged before it
    owners: dict[str, str]  # who holds the emails it claims
    plan: BatchPlan
    keys: dict[str, bytes | None]  # its users' keys before it
    sealed_with: list[bytes | None]  # per logged event, the key that seals it
    keys_after: dict[str, bytes | None]  # and the keys after it


def decided_batches(
    batches: Iterable[Sequence[KafkaRecord]], max_message_bytes: int
) -> list[DecidedBatch]:
    """Each batch decided against the state the batches before it left (what the service
    reads back from the database)."""
    planner = Planner({}, [], {})
    keys: dict[str, bytes | None] = {}
    decided = []
    for records in batches:
        accepted, _, _ = split_batch(records, max_message_bytes)
        subjects = {event.subject for _, event in accepted}
        before = {u: s for u, s in planner.current.items() if u in subjects}
        logged = [k for _, e in accepted if (k := (e.source, e.id)) in planner.seen]
        owners = {e: planner.owners[e] for e in claimed_emails(accepted) if e in planner.owners}
        read_rows = [
            dict(zip(USER_COLUMNS, r, strict=True)) for r in user_rows(before.values(), keys)
        ]
        planner = Planner(planner.current, planner.seen, planner.owners)
        plan = BatchPlan(planner.decide(accepted), planner.users)
        sealed_with, keys_after = sealing_keys(plan.logged, keys, new_key)
        decided.append(
            DecidedBatch(
                records,
                accepted,
                before,
                read_rows,
                logged,
                owners,
                plan,
                keys,
                sealed_with,
                keys_after,
            )
        )
        keys = keys_after
    return decided


def service_rows(
    batches: Iterable[Sequence[KafkaRecord]], max_message_bytes: int
) -> list[BatchRows]:
    """The rows the service writes for each batch (``decided_batches``)."""
    return [
        BatchRows(
            event_rows(b.plan.logged, b.sealed_with, Sealer(len(b.plan.logged))),
            user_rows(b.plan.users.values(), b.keys_after),
        )
        for b in decided_batches(batches, max_message_bytes)
    ]
