"""`bench --mode probe`: what the parts allow, each bare, on the topic the bench drains
and on the same machine: a drain of the topic with aiokafka alone, the COPY of the
service's log rows and the upsert of its users rows, each with the service's batch size
and as many batches at once as it writes. The rows are built before the clock starts
(``probedata``), so that a write's time and CPU are the database's and the driver's.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.core.rows import EVENT_COLUMNS
from consumer.edges.kafka import client_options
from consumer.edges.store_users import upsert_users
from consumer.settings import Settings
from user_events_devtools.benchservers import PARTITIONS, drop_database, new_database
from user_events_devtools.cputime import CpuUsage, sample_cpu, us_per_event, usage_between
from user_events_devtools.drains import DrainResult
from user_events_devtools.probedata import BatchRows, in_batches, service_rows, topic_records


@dataclass
class ProbePart:
    """One part measured bare: ``events`` of the data set passed through it as ``rows``
    (records fetched, log rows copied, users rows upserted); ``stored`` is what the table
    held after (None for the drain). CPU is the bench process's, PostgreSQL's backends'
    (None for the drain, or when the server is not local) and the embedded broker's (None
    for another broker); per event, of the data set's events, as the drains' is."""

    name: str
    events: int
    rows: int
    seconds: float
    events_per_second: float
    cpu_seconds: float
    postgres_cpu_seconds: float | None
    broker_cpu_seconds: float | None
    stored: int | None = None
    us_per_event: float | None = field(default=None, init=False)
    postgres_us_per_event: float | None = field(default=None, init=False)
    broker_us_per_event: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.us_per_event = us_per_event(self.cpu_seconds, self.events)
        self.postgres_us_per_event = us_per_event(self.postgres_cpu_seconds, self.events)
        self.broker_us_per_event = us_per_event(self.broker_cpu_seconds, self.events)

    @classmethod
    def timed(
        cls, name: str, events: int, rows: int, seconds: float, cpu: CpuUsage, stored: int | None
    ) -> ProbePart:
        return cls(
            name, events, rows, seconds, events / seconds, cpu.run, cpu.postgres, cpu.broker, stored
        )


@dataclass
class Probe:
    """The probe's section of the report: its parts, how they were run, and the rate of
    the parts one after another: what a process that fetched, wrote the log and upserted
    the users in turn, and did nothing else, would reach."""

    batch_size: int
    lanes: int
    parts: list[ProbePart]
    in_series_events_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.in_series_events_per_second = 1 / sum(1 / p.events_per_second for p in self.parts)

    @property
    def postgres_read(self) -> bool:
        """Whether PostgreSQL's CPU was read for the writes (the server is local)."""
        writes = [part for part in self.parts if part.stored is not None]
        return all(part.postgres_cpu_seconds is not None for part in writes)

    @property
    def broker_read(self) -> bool:
        """Whether the broker's CPU was read (it is the embedded one)."""
        return all(part.broker_cpu_seconds is not None for part in self.parts)


async def run_probe(
    settings: Settings,
    server_url: str,
    ends: dict[int, int],
    run_id: str,
    *,
    users: int,
    traceparents: bool = False,
    early: float = 0.0,
    broker_pid: int | None = None,
) -> Probe:
    """Measure the three parts on the topic of ``settings``, pre-loaded by ``preload`` with
    these arguments (its partitions end at ``ends``). Each write goes to a fresh database
    of its own, dropped at the end."""
    total = sum(ends.values())
    placed = topic_records(settings.kafka_topic, PARTITIONS, total, users, traceparents, early)
    if {p: len(records) for p, records in placed.items() if records} != ends:
        raise RuntimeError("the probe's copy of the data set is not what the topic holds")
    batch_size, lanes = settings.kafka_max_poll_records, settings.db_concurrent_batches
    batches = service_rows(in_batches(placed, batch_size), settings.max_message_bytes)
    del placed  # the records: only their rows are written
    parts = [await bare_drain(settings, ends, broker_pid)]
    for name, write, table in (
        ("log COPY", _copy_log, "user_events"),
        ("users upsert", _upsert_users, "users"),
    ):
        database = f"bench_probe_{table}_{run_id}"
        try:
            url = await new_database(server_url, database)
            parts.append(
                await bare_writes(name, url, table, batches, write, lanes, total, broker_pid)
            )
        finally:
            await drop_database(server_url, database)
    return Probe(batch_size, lanes, parts)


async def bare_drain(settings: Settings, ends: dict[int, int], broker_pid: int | None) -> ProbePart:
    """Fetch the topic from its start to ``ends`` with getmany, as the service's consumer
    is configured, outside any group; nothing is done with the records."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        fetch_max_bytes=settings.kafka_fetch_max_bytes,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        left = {TopicPartition(settings.kafka_topic, p) for p, end in ends.items() if end > 0}
        consumer.assign(list(left))
        for tp in left:
            consumer.seek(tp, 0)
        fetched = 0
        started = time.monotonic()
        before = await sample_cpu([os.getpid()], None, broker_pid)
        while left:
            got = await consumer.getmany(
                timeout_ms=settings.kafka_fetch_timeout_ms,
                max_records=settings.kafka_max_poll_records,
            )
            for tp, records in got.items():
                fetched += len(records)
                if records and records[-1].offset + 1 >= ends[tp.partition]:
                    left.discard(tp)
                    consumer.pause(tp)
        seconds = time.monotonic() - started
        cpu = usage_between(before, await sample_cpu([os.getpid()], None, broker_pid))
    finally:
        await consumer.stop()
    return ProbePart.timed("kafka drain", sum(ends.values()), fetched, seconds, cpu, None)


Write = Callable[[asyncpg.Connection, BatchRows], Awaitable[int]]


async def _copy_log(conn: asyncpg.Connection, batch: BatchRows) -> int:
    if batch.log:  # as the service: a batch of rejections alone logs nothing
        await conn.copy_records_to_table("user_events", records=batch.log, columns=EVENT_COLUMNS)
    return len(batch.log)


async def _upsert_users(conn: asyncpg.Connection, batch: BatchRows) -> int:
    if batch.users:
        async with conn.transaction():
            await upsert_users(conn, batch.users)
    return len(batch.users)


async def bare_writes(
    name: str,
    database: str,
    table: str,
    batches: Sequence[BatchRows],
    write: Write,
    lanes: int,
    events: int,
    broker_pid: int | None,
) -> ProbePart:
    """``write`` each batch, each in its own transaction, on ``lanes`` connections that
    take the next batch as they finish one, as the service's write lanes do."""
    connections = [await asyncpg.connect(database) for _ in range(lanes)]
    watcher = await asyncpg.connect(database)  # samples the CPU: left out of the count
    try:
        queue = iter(batches)
        started = time.monotonic()
        before = await sample_cpu([os.getpid()], watcher, broker_pid)
        written = await asyncio.gather(*(_lane(conn, queue, write) for conn in connections))
        seconds = time.monotonic() - started
        cpu = usage_between(before, await sample_cpu([os.getpid()], watcher, broker_pid))
        stored = await watcher.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        for conn in (*connections, watcher):
            await conn.close()
    return ProbePart.timed(name, events, sum(written), seconds, cpu, stored)


async def _lane(conn: asyncpg.Connection, queue: Iterator[BatchRows], write: Write) -> int:
    return sum([await write(conn, batch) for batch in queue])


def probe_lines(probe: Probe, service: DrainResult | None) -> list[str]:
    """The probe's table, and how close the service (when it drained too) comes to what
    the parts allow."""

    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [
        f"\nprobe: each part bare, on the same topic and data; batches of {probe.batch_size:,}, "
        f"{probe.lanes} at once",
        f"{'part':<13} {'events':>9} {'rows':>9} {'seconds':>8} {'events/s':>10} "
        f"{'bench us/ev':>12} {'PG us/ev':>9} {'broker us/ev':>13}",
    ]
    for part in probe.parts:
        lines.append(
            f"{part.name:<13} {part.events:>9,} {part.rows:>9,} {part.seconds:>8.1f} "
            f"{part.events_per_second:>10,.0f} {us(part.us_per_event):>12} "
            f"{us(part.postgres_us_per_event):>9} {us(part.broker_us_per_event):>13}"
        )
    bench_us = sum(part.us_per_event or 0.0 for part in probe.parts)
    postgres_us = sum(part.postgres_us_per_event or 0.0 for part in probe.parts)
    lines += [
        "bench us/ev: CPU per event of the data set, of this process (the fetch, the COPY "
        "encoding); PG us/ev: of the backends writing",
        f"the parts one after another: {probe.in_series_events_per_second:,.0f} events/s, "
        f"{bench_us:.1f} us of CPU per event in the client, {postgres_us:.1f} in PostgreSQL",
    ]
    if service is not None:
        lines.append(
            f"{service.name}: {service.events_per_second:,.0f} events/s "
            f"({service.events_per_second / probe.in_series_events_per_second:.0%} of the "
            f"parts one after another), {us(service.us_per_event)} us of CPU per event in "
            f"`run`, {us(service.postgres_us_per_event)} in PostgreSQL"
        )
    return lines
