"""The two drains the bench compares on the same pre-loaded topic: the service (`run`
processes in one consumer group) and the seed's one-transaction-per-message baseline;
and the check that both end in the same state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.core.batchplan import Verdict, anothers_email_holder, email_conflict
from consumer.core.decode import decode
from consumer.core.projection import apply_event
from consumer.core.records import KafkaRecord, Outcome, Rejection
from consumer.core.rows import event_rows, state_from_row, user_rows
from consumer.core.sealing import Sealer
from consumer.edges.deadletter import DeadLetterQueue
from consumer.edges.kafka import client_options, max_request_bytes, start_producer
from consumer.settings import Settings
from user_events_devtools.benchservers import PARTITIONS
from user_events_devtools.cputime import sample_cpu, us_per_event, usage_between
from user_events_devtools.devenv import free_port
from user_events_devtools.histograms import histogram_quantile, merged_histogram
from user_events_devtools.profiler import ProfileRequest, Profiling
from user_events_devtools.serviceprocess import (
    GC_GENERATIONS,
    gc_collections,
    peak_rss_mb,
    scrape,
    start_service,
    wait_for_offsets,
    wait_until_ready,
)


@dataclass
class DrainResult:
    """What one drain measured. CPU is counted over the timed drain alone: the `run`
    processes' (the bench's own for the baseline), the PostgreSQL backends' that served
    them (None when the server is not local) and the broker's (None unless embedded)."""

    name: str
    events: int
    seconds: float
    events_per_second: float
    batch_p50_seconds: float | None = None
    batch_p99_seconds: float | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None
    us_per_event: float | None = field(default=None, init=False)
    postgres_cpu_seconds: float | None = None
    postgres_us_per_event: float | None = field(default=None, init=False)
    broker_cpu_seconds: float | None = None
    broker_us_per_event: float | None = field(default=None, init=False)
    profiles: list[str] = field(default_factory=list)  # py-spy's, with --profile
    # The `run` processes' cyclic collections around the timed drain, young to old,
    # summed: a young one rescans what was allocated since the one before, and should not
    # come from the batches in flight alone (``consumer.collector.tune_for_batches``).
    gc_collections: list[int] | None = None

    def __post_init__(self) -> None:
        self.us_per_event = us_per_event(self.cpu_seconds, self.events)
        self.postgres_us_per_event = us_per_event(self.postgres_cpu_seconds, self.events)
        self.broker_us_per_event = us_per_event(self.broker_cpu_seconds, self.events)


async def drain_with_service(
    settings: Settings,
    database: str,
    ends: dict[int, int],
    total: int,
    members: int = 1,
    *,
    broker_pid: int | None = None,
    profile: ProfileRequest | None = None,
) -> DrainResult:
    """Drain with ``members`` `run` processes in one consumer group (one per core is how
    the service scales out on a bigger machine). RSS is the largest member's, CPU the sum.
    With ``profile``, py-spy records each member while the drain is timed."""
    ports = [free_port() for _ in range(members)]
    processes = [start_service(settings, database, port) for port in ports]
    pids = [process.pid for process in processes]
    name = "service" if members == 1 else f"service x{members}"
    targets = {name if members == 1 else f"service-{i + 1}": pid for i, pid in enumerate(pids)}

    def all_alive() -> bool:
        return all(process.poll() is None for process in processes)

    try:
        conn = await asyncpg.connect(database)
        try:
            # The clock starts when every member is ready (in its group, the database up),
            # so imports and the group join are not counted, and every event is. The CPU
            # samples are taken inside the same span, before any member is stopped: a
            # PostgreSQL backend exits with its connection.
            for port in ports:
                await wait_until_ready(port, all_alive)
            collections_before = [gc_collections(await scrape(port)) for port in ports]
            with Profiling(profile, targets) as profiling:
                started = time.monotonic()
                before = await sample_cpu(pids, conn, broker_pid)
                await wait_for_offsets(conn, settings.kafka_group_id, ends, all_alive)
                seconds = time.monotonic() - started
                cpu = usage_between(before, await sample_cpu(pids, conn, broker_pid))
        finally:
            await conn.close()
        metrics_text = [await scrape(port) for port in ports]
        rss = max(peak_rss_mb(pid) for pid in pids)
        collections_after = [gc_collections(text) for text in metrics_text]
        collections = [
            sum(a[g] - b[g] for a, b in zip(collections_after, collections_before, strict=True))
            for g in range(GC_GENERATIONS)
        ]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    batches = merged_histogram(metrics_text, "user_events_batch_duration_seconds")
    p50, p99 = (
        histogram_quantile(batches, "user_events_batch_duration_seconds", q) for q in (0.5, 0.99)
    )
    return DrainResult(
        name,
        total,
        seconds,
        total / seconds,
        p50,
        p99,
        rss,
        cpu.run,
        cpu.postgres,
        cpu.broker,
        [str(path) for path in profiling.written],
        collections,
    )


# --- the baseline: the seed's pattern, one transaction per message ---------------------------


async def drain_with_baseline(
    settings: Settings,
    database: str,
    ends: dict[int, int],
    total: int,
    *,
    broker_pid: int | None = None,
) -> DrainResult:
    """Per message: decode, then one transaction that reads the user, inserts the event
    row and upserts the user. Same decisions as the service, so the same final state.
    It runs in this process, so its `run` CPU is this process's."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    producer = await start_producer(settings)
    dead_letters = DeadLetterQueue(
        producer, settings.kafka_dlq_topic, "baseline", max_request_bytes(settings)
    )
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(settings.kafka_topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    # A connection of its own to sample PostgreSQL's CPU, left out of the count.
    probe = await asyncpg.connect(database)
    started = time.monotonic()
    before = await sample_cpu([os.getpid()], probe, broker_pid)
    try:
        positions = {p: 0 for p in range(PARTITIONS)}
        while any(positions[p] < end for p, end in ends.items()):
            for tp, messages in (await consumer.getmany(timeout_ms=200, max_records=500)).items():
                for message in messages:
                    record = KafkaRecord.from_consumer_record(message)
                    verdict = decode(record, settings.max_message_bytes)
                    if isinstance(verdict, Rejection):
                        await dead_letters.send_all([(record, verdict)])
                    else:
                        rejection = await _baseline_write(pool, record, verdict)
                        if rejection is not None:
                            await dead_letters.send_all([(record, rejection)])
                    positions[tp.partition] = message.offset + 1
        seconds = time.monotonic() - started
        cpu = usage_between(before, await sample_cpu([os.getpid()], probe, broker_pid))
    finally:
        await probe.close()
        await consumer.stop()
        await producer.stop()
        await pool.close()
    return DrainResult(
        "baseline",
        total,
        seconds,
        total / seconds,
        cpu_seconds=cpu.run,
        postgres_cpu_seconds=cpu.postgres,
        broker_cpu_seconds=cpu.broker,
    )


_BASELINE_UPSERT_USER = """
INSERT INTO users (user_id, email, name, status, created_at, updated_at, versions, data_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id) DO UPDATE SET
    email = EXCLUDED.email, name = EXCLUDED.name, status = EXCLUDED.status,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    versions = EXCLUDED.versions
"""


async def _baseline_write(pool: asyncpg.Pool, record: KafkaRecord, event: Any) -> Rejection | None:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT 1 FROM user_events WHERE source = $1 AND event_id = $2", event.source, event.id
        ):
            return None  # a duplicate
        row = await conn.fetchrow(
            "SELECT user_id, email, name, status, created_at, updated_at, versions FROM users "
            "WHERE user_id = $1 FOR UPDATE",
            event.subject,
        )
        state = state_from_row(row) if row else None
        after, result = apply_event(state, event)
        if isinstance(result, Rejection):
            return result
        if (
            result is Outcome.APPLIED
            and after is not None
            and after.status == "active"
            and after.email
        ):
            holder = await conn.fetchval(
                "SELECT user_id FROM users WHERE status = 'active' AND lower(email) = $1",
                after.email.lower(),
            )
            owners = {after.email.lower(): holder} if holder is not None else {}
            other = anothers_email_holder(owners, after)
            if other is not None:
                return email_conflict(other)
        # The seed's baseline keeps no keys: it seals nothing, as the seed did not.
        event_row = event_rows([Verdict(record, event, result)], [None], Sealer())[0]
        inserted = await conn.fetchval(
            "INSERT INTO user_events (source, event_id, user_id, type, time, sequence, "
            "kafka_topic, kafka_partition, kafka_offset, payload, outcome, personal, parked_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            *event_row,
        )
        if inserted and result is Outcome.APPLIED and after is not None:
            user = user_rows([after], {})[0]
            await conn.execute(_BASELINE_UPSERT_USER, *user)
    return None


async def parking_outcome(database: str) -> dict[str, Any]:
    """What the service's drain did with the events that came before their user's create:
    how many healed and how long they waited, and how many wait still."""
    conn = await asyncpg.connect(database)
    try:
        healed = await conn.fetchrow(
            "SELECT count(*) AS n, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - "
            "parked_at)) AS p50, max(extract(epoch FROM recorded_at - parked_at)) AS most "
            "FROM user_events WHERE parked_at IS NOT NULL"
        )
        still = await conn.fetchval("SELECT count(*) FROM parked_events")
    finally:
        await conn.close()
    assert healed is not None
    return {
        "healed": healed["n"],
        "waited_p50_seconds": None if healed["p50"] is None else float(healed["p50"]),
        "waited_max_seconds": None if healed["most"] is None else float(healed["most"]),
        "still_parked": still,
    }


async def states_agree(a: str, b: str) -> bool:
    """Both databases hold the same users and the same event log."""
    queries = (
        "SELECT user_id, email, name, status, versions::jsonb FROM users ORDER BY user_id",
        "SELECT source, event_id, outcome FROM user_events ORDER BY source, event_id",
    )
    for query in queries:
        rows = []
        for url in (a, b):
            conn = await asyncpg.connect(url)
            try:
                rows.append([tuple(r) for r in await conn.fetch(query)])
            finally:
                await conn.close()
        if rows[0] != rows[1]:
            return False
    return True
