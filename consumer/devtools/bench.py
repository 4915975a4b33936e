"""`user-events-consumer bench`: drain a pre-loaded topic with the real `run` path and with
the seed's one-transaction-per-message baseline, on the same data, and compare.

Everything runs against real servers: the broker and PostgreSQL named by
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, else embedded ones started here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.core.decode import decode, decode_all
from consumer.core.ordering import Verdict, apply_event
from consumer.core.records import KafkaRecord, Outcome, Reason, Rejection
from consumer.devtools.benchdata import bench_messages
from consumer.edges.deadletter import DeadLetterQueue
from consumer.edges.kafka import client_options, ensure_topics, max_request_bytes, start_producer
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import event_rows, state_from_row, user_rows
from consumer.settings import Settings

PARTITIONS = 6
SERVICE_COMMAND = [sys.executable, "-m", "consumer.cli", "run"]


@dataclass
class DrainResult:
    """What one drain measured."""

    name: str
    events: int
    seconds: float
    events_per_second: float
    batch_p50_seconds: float | None = None
    batch_p99_seconds: float | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None


@dataclass
class BenchReport:
    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[DrainResult] = field(default_factory=list)
    ratio: float | None = None
    states_agree: bool | None = None
    steady: dict[str, Any] | None = None
    # CPU per record of decoding alone (bytes to event or rejection), no I/O.
    decode_us_per_record: float | None = None


# --- servers and data ----------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(bootstrap servers, PostgreSQL server URL): configured ones, else embedded ones."""
    from consumer.devtools.devenv import EmbeddedBroker, EmbeddedPostgres

    broker = postgres = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    server_url = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="ue-bench-") as tmp:
        try:
            if not bootstrap:
                broker = EmbeddedBroker().start()
                bootstrap = broker.bootstrap_servers
            if not server_url:
                postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
                server_url = postgres.url
            yield bootstrap, server_url
        finally:
            if broker:
                broker.stop()
            if postgres:
                postgres.stop(mode="immediate")


async def new_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_url.rpartition("/")[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


async def preload(settings: Settings, total: int, users: int) -> dict[int, int]:
    """Publish the data set; returns the high watermark of each partition."""
    await ensure_topics(settings, {settings.kafka_topic: PARTITIONS, settings.kafka_dlq_topic: 1})
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks=1,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    ends: dict[int, int] = {}
    try:
        pending = []
        for key, value, headers in bench_messages(total, users):
            pending.append(
                await producer.send(settings.kafka_topic, value, key=key, headers=headers)
            )
            if len(pending) >= 5000:
                _note_ends(ends, await asyncio.gather(*pending))
                pending = []
        _note_ends(ends, await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return ends


def _note_ends(ends: dict[int, int], metadata: Sequence[Any]) -> None:
    for meta in metadata:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)


# --- the service, as a subprocess running `run` --------------------------------------------


def start_service(
    settings: Settings, database: str, port: int, **extra: str
) -> subprocess.Popen[bytes]:
    """`user-events-consumer run` in a subprocess, on ``settings``' topics and group."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC": settings.kafka_topic,
        "KAFKA_DLQ_TOPIC": settings.kafka_dlq_topic,
        "KAFKA_GROUP_ID": settings.kafka_group_id,
        "DATABASE_URL": database,
        "HTTP_PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        **extra,
    }
    return subprocess.Popen(SERVICE_COMMAND, env=env)


async def drain_with_service(
    settings: Settings, database: str, ends: dict[int, int], total: int, members: int = 1
) -> DrainResult:
    """Drain with ``members`` `run` processes in one consumer group (one per core is how
    the service scales out on a bigger machine). RSS is the largest member's, CPU the sum."""
    from consumer.devtools.devenv import free_port

    ports = [free_port() for _ in range(members)]
    processes = [start_service(settings, database, port) for port in ports]

    def all_alive() -> bool:
        return all(process.poll() is None for process in processes)

    try:
        # The clock starts when every member is ready (in its group, the database up),
        # so imports and the group join are not counted, and every event is.
        for port in ports:
            await _wait_until_ready(port, all_alive)
        started = time.monotonic()
        conn = await asyncpg.connect(database)
        try:
            await _wait_for_offsets(conn, settings.kafka_group_id, ends, all_alive)
            seconds = time.monotonic() - started
        finally:
            await conn.close()
        metrics_text = [await _scrape(port) for port in ports]
        usage = [_process_usage(process.pid) for process in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    batches = _merged_histogram(metrics_text, "user_events_batch_duration_seconds")
    p50, p99 = (
        histogram_quantile(batches, "user_events_batch_duration_seconds", q) for q in (0.5, 0.99)
    )
    name = "service" if members == 1 else f"service x{members}"
    return DrainResult(
        name,
        total,
        seconds,
        total / seconds,
        p50,
        p99,
        max(rss for rss, _ in usage),
        sum(cpu for _, cpu in usage),
    )


async def _wait_until_ready(port: int, alive: Any) -> None:
    while True:
        with contextlib.suppress(OSError):
            status, _ = await _http_get(port, "/readyz")
            if status == 200:
                return
        if not alive():
            raise RuntimeError("the consumer exited before it was ready")
        await asyncio.sleep(0.05)


async def _wait_for_offsets(
    conn: asyncpg.Connection,
    group: str,
    ends: dict[int, int],
    alive: Any,
) -> None:
    """Until the stored offsets reach ``ends``."""
    while True:
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1", group
        )
        stored = {r["partition"]: r["next_offset"] for r in rows}
        if all(stored.get(p, 0) >= end for p, end in ends.items()):
            return
        if not alive():
            raise RuntimeError("the consumer exited before draining the topic")
        await asyncio.sleep(0.1)


async def _http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


async def _scrape(port: int) -> str:
    return (await _http_get(port, "/metrics"))[1]


def _process_usage(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmHWM:\s+(\d+)", status)[1])  # type: ignore[index]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    """Quantile ``q`` of a Prometheus histogram in exposition ``text``, as PromQL computes it."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)[1]  # type: ignore[index]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            return previous_le + (le - previous_le) * (rank - previous_count) / max(
                count - previous_count, 1e-9
            )
        previous_le, previous_count = le, count
    return None


# --- the baseline: the seed's pattern, one transaction per message ---------------------------


async def drain_with_baseline(
    settings: Settings, database: str, ends: dict[int, int], total: int
) -> DrainResult:
    """Per message: decode, then one transaction that reads the user, inserts the event
    row and upserts the user. Same decisions as the service, so the same final state."""
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
    started = time.monotonic()
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
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
    seconds = time.monotonic() - started
    return DrainResult("baseline", total, seconds, total / seconds)


_BASELINE_UPSERT_USER = """
INSERT INTO users (user_id, email, name, status, created_at, updated_at, versions)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
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
            if holder not in (None, after.user_id):
                return Rejection(Reason.CONFLICT, "email belongs to another active user")
        event_row = event_rows([Verdict(record, event, result)])[0]
        inserted = await conn.fetchval(
            "INSERT INTO user_events (source, event_id, user_id, type, time, sequence, "
            "kafka_topic, kafka_partition, kafka_offset, payload, outcome) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11) "
            "ON CONFLICT (source, event_id) DO NOTHING RETURNING 1",
            *event_row,
        )
        if inserted and result is Outcome.APPLIED and after is not None:
            user = user_rows([after])[0]
            await conn.execute(_BASELINE_UPSERT_USER, *user)
    return None


async def states_agree(a: str, b: str) -> bool:
    """Both databases hold the same users and the same event log."""
    queries = (
        "SELECT user_id, email, name, status, versions::text FROM users ORDER BY user_id",
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


# --- steady load ---------------------------------------------------------------------------


async def steady_load(
    settings: Settings, database: str, rate: int, seconds: float
) -> dict[str, Any]:
    """Publish at ``rate`` events/s for ``seconds`` beside a running service; report the
    p50/p99 of event time to commit from the service's own histogram."""
    from datetime import UTC, datetime

    from consumer.devtools.devenv import free_port
    from schemas import build_event, structured_record

    await ensure_topics(settings, {settings.kafka_topic: PARTITIONS, settings.kafka_dlq_topic: 1})
    port = free_port()
    process = start_service(settings, database, port, KAFKA_FETCH_TIMEOUT_MS="50")
    producer = AIOKafkaProducer(**client_options(settings), acks=1, linger_ms=2)
    await producer.start()
    sent = 0
    try:
        # A first event, to know the service has joined before the clock starts.
        ends: dict[int, int] = {}
        warm = build_event("user.created", "warm", {"email": "warm@bench.example", "name": "W"})
        key, value, headers = structured_record(warm)
        _note_ends(
            ends,
            [await (await producer.send(settings.kafka_topic, value, key=key, headers=headers))],
        )
        conn = await asyncpg.connect(database)
        await _wait_for_offsets(conn, settings.kafka_group_id, ends, lambda: process.poll() is None)
        before = await _scrape(port)
        started = time.monotonic()
        tick = 0.01
        pending = []
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                user = f"s{sent % 20000}"
                event = build_event(
                    "user.created" if sent < 20000 else "user.updated",
                    user,
                    {"email": f"{user}@bench.example", "name": f"N{sent}"}
                    if sent < 20000
                    else {"name": f"N{sent}"},
                    source="/steady",
                    sequence=sent // 20000 + 1,
                    event_id=f"s{sent}",
                    time=datetime.now(UTC),
                )
                key, value, headers = structured_record(event)
                pending.append(
                    await producer.send(settings.kafka_topic, value, key=key, headers=headers)
                )
                sent += 1
            await asyncio.sleep(tick)
        _note_ends(ends, await asyncio.gather(*pending))
        await _wait_for_offsets(conn, settings.kafka_group_id, ends, lambda: process.poll() is None)
        await conn.close()
        after = await _scrape(port)
    finally:
        await producer.stop()
        process.terminate()
        process.wait(30)
    age = _histogram_delta(before, after, "user_events_event_age_seconds")
    # Inside the service only: from the fetch of a batch to its commit. The rest of an
    # event's age is spent in the load generator, the producer and the broker.
    batch = _histogram_delta(before, after, "user_events_batch_duration_seconds")
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "events": sent,
        "p50_seconds": histogram_quantile(age, "user_events_event_age_seconds", 0.5),
        "p99_seconds": histogram_quantile(age, "user_events_event_age_seconds", 0.99),
        "batch_p50_seconds": histogram_quantile(batch, "user_events_batch_duration_seconds", 0.5),
        "batch_p99_seconds": histogram_quantile(batch, "user_events_batch_duration_seconds", 0.99),
    }


def _buckets(text: str, name: str) -> dict[str, float]:
    """``name``'s bucket series in an exposition ``text``, with their counts."""
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            series, value = line.rsplit(" ", 1)
            buckets[series] = float(value)
    return buckets


def _exposition(buckets: Mapping[str, float]) -> str:
    return "\n".join(f"{series} {value}" for series, value in buckets.items())


def _merged_histogram(texts: Sequence[str], name: str) -> str:
    """The exposition of ``name``'s buckets summed over several processes' scrapes."""
    summed: Counter[str] = Counter()
    for text in texts:
        summed.update(_buckets(text, name))
    return _exposition(summed)


def _histogram_delta(before: str, after: str, name: str) -> str:
    """The exposition of ``name``'s buckets counted between two scrapes."""
    old, new = _buckets(before, name), _buckets(after, name)
    return _exposition({series: value - old.get(series, 0.0) for series, value in new.items()})


# --- the command -------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def phase_settings(bootstrap: str, name: str) -> Settings:
    """Settings for one phase: its own topic, dead-letter topic and group."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=name,
        kafka_dlq_topic=f"{name}.dlq",
        kafka_group_id=name,
    )


def decode_cost(total: int, users: int, repeats: int = 5) -> float:
    """Microseconds of CPU per record to decode the data set's first records (at most
    50,000), in chunks of the loop's size: the best of ``repeats`` passes."""
    records = [
        KafkaRecord("bench", 0, offset, 0, key, value, tuple(headers))
        for offset, (key, value, headers) in enumerate(bench_messages(min(total, 50_000), users))
    ]
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for start in range(0, len(records), 100):
            decode_all(records[start : start + 100], 1024 * 1024)
        best = min(best, time.process_time() - started)
    return best / len(records) * 1e6


async def run_bench(args: argparse.Namespace) -> BenchReport:
    report = BenchReport(_machine(), {k: v for k, v in vars(args).items() if k != "handler"})
    if args.mode in ("drain", "all"):
        report.decode_us_per_record = decode_cost(args.events, args.users)
    with servers() as (bootstrap, server_url):
        run_id = uuid.uuid4().hex[:8]
        if args.mode in ("drain", "all"):
            settings = phase_settings(bootstrap, f"bench-{run_id}")
            print(f"bench: publishing {args.events} events over {args.users} users ...", flush=True)
            ends = await preload(settings, args.events, args.users)
            service_db = await new_database(server_url, f"bench_service_{run_id}")
            print("bench: draining with the service (`run`) ...", flush=True)
            report.results.append(
                await drain_with_service(settings, service_db, ends, args.events, args.members)
            )
            if not args.skip_baseline:
                baseline_db = await new_database(server_url, f"bench_baseline_{run_id}")
                print(
                    "bench: draining with the baseline (one transaction per message) ...",
                    flush=True,
                )
                report.results.append(
                    await drain_with_baseline(settings, baseline_db, ends, args.events)
                )
                report.ratio = (
                    report.results[0].events_per_second / report.results[1].events_per_second
                )
                report.states_agree = await states_agree(service_db, baseline_db)
        if args.mode in ("steady", "all"):
            settings = phase_settings(bootstrap, f"steady-{run_id}")
            steady_db = await new_database(server_url, f"bench_steady_{run_id}")
            print(f"bench: steady load, {args.rate} events/s for {args.seconds} s ...", flush=True)
            report.steady = await steady_load(settings, steady_db, args.rate, args.seconds)
    return report


def print_report(report: BenchReport) -> None:
    def fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:,.{digits}f}"

    print(
        f"\nmachine: {report.machine['cpu']}, {report.machine['cores']} cores, "
        f"Python {report.machine['python']}"
    )
    print(
        f"{'path':<10} {'events':>9} {'seconds':>8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'RSS MB':>7} {'CPU s':>7}"
    )
    for r in report.results:
        print(
            f"{r.name:<10} {r.events:>9,} {r.seconds:>8.1f} {r.events_per_second:>10,.0f} "
            f"{fmt(r.batch_p50_seconds, 1000):>8} {fmt(r.batch_p99_seconds, 1000):>8} "
            f"{fmt(r.peak_rss_mb):>7} {fmt(r.cpu_seconds):>7}"
        )
    if report.decode_us_per_record is not None:
        print(f"decoding alone: {report.decode_us_per_record:.2f} us of CPU per record")
    if report.ratio is not None:
        print(f"service/baseline: {report.ratio:.1f}x; same final state: {report.states_agree}")
    if report.steady:
        s = report.steady
        print(
            f"steady {s['rate_per_second']}/s for {s['seconds']} s: time to commit "
            f"p50 {fmt(s['p50_seconds'], 1000)} ms, p99 {fmt(s['p99_seconds'], 1000)} ms; "
            f"batch fetch to commit p50 {fmt(s['batch_p50_seconds'], 1000)} ms, "
            f"p99 {fmt(s['batch_p99_seconds'], 1000)} ms"
        )


def add_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure throughput, latency and memory on real servers",
        description="Pre-load a topic and drain it with the service and with a "
        "one-transaction-per-message baseline; optionally a steady-load run. Uses "
        "KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else embedded servers.",
    )
    bench.add_argument("--events", type=int, default=200_000, help="events to pre-load")
    bench.add_argument("--users", type=int, default=50_000, help="distinct users")
    bench.add_argument("--mode", choices=["drain", "steady", "all"], default="all")
    bench.add_argument("--skip-baseline", action="store_true", help="drain with the service only")
    bench.add_argument(
        "--members",
        type=int,
        default=1,
        help="drain with this many `run` processes in one consumer group",
    )
    bench.add_argument("--rate", type=int, default=5000, help="steady-load events per second")
    bench.add_argument("--seconds", type=float, default=30.0, help="steady-load duration")
    bench.add_argument("--json", default="bench-results.json", help="where to write the results")
    bench.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    report = asyncio.run(run_bench(args))
    print_report(report)
    Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if report.states_agree in (None, True) else 1
