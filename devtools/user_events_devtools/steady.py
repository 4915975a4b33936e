"""The bench's steady-load phase: publish at a fixed rate beside a running service and
read the latencies off the service's own histograms."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from user_events_schemas import build_event, structured_record

from consumer.edges.kafka import client_options, ensure_topics
from consumer.settings import Settings
from user_events_devtools.benchservers import PARTITIONS, note_ends
from user_events_devtools.cputime import cpu_report, sample_cpu, usage_between
from user_events_devtools.devenv import free_port
from user_events_devtools.histograms import histogram_delta, histogram_quantile
from user_events_devtools.profiler import ProfileRequest, Profiling
from user_events_devtools.serviceprocess import scrape, start_service, wait_for_offsets


async def steady_load(
    settings: Settings,
    database: str,
    rate: int,
    seconds: float,
    *,
    broker_pid: int | None = None,
    profile: ProfileRequest | None = None,
) -> dict[str, Any]:
    """Publish at ``rate`` events/s for ``seconds`` beside a running service; report the
    p50/p99 of event time to commit from the service's own histogram, and the CPU spent
    from the first event published to the last committed (the broker's includes this
    load generator's produce requests). With ``profile``, py-spy records the service."""
    await ensure_topics(settings, {settings.kafka_topic: PARTITIONS, settings.kafka_dlq_topic: 1})
    port = free_port()
    process = start_service(settings, database, port, KAFKA_FETCH_TIMEOUT_MS="50")
    producer = AIOKafkaProducer(**client_options(settings), acks=1, linger_ms=2)
    await producer.start()
    sent = 0
    try:
        # A first event, to know the service has joined before the clock starts.
        ends: dict[int, int] = {}
        warm = build_event(
            "user.created", "warm", {"email": "warm@bench.example", "name": "W"}, source="/steady"
        )
        key, value, headers = structured_record(warm)
        note_ends(
            ends,
            [await (await producer.send(settings.kafka_topic, value, key=key, headers=headers))],
        )
        conn = await asyncpg.connect(database)
        await wait_for_offsets(conn, settings.kafka_group_id, ends, lambda: process.poll() is None)
        before = await scrape(port)
        with Profiling(profile, {"steady": process.pid}) as profiling:
            started = time.monotonic()
            cpu_before = await sample_cpu([process.pid], conn, broker_pid)
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
            note_ends(ends, await asyncio.gather(*pending))
            await wait_for_offsets(
                conn, settings.kafka_group_id, ends, lambda: process.poll() is None
            )
            cpu = usage_between(cpu_before, await sample_cpu([process.pid], conn, broker_pid))
        await conn.close()
        after = await scrape(port)
    finally:
        await producer.stop()
        process.terminate()
        process.wait(30)
    age = histogram_delta(before, after, "user_events_event_age_seconds")
    # Inside the service only: from the fetch of a batch to its commit. The rest of an
    # event's age is spent in the load generator, the producer and the broker.
    batch = histogram_delta(before, after, "user_events_batch_duration_seconds")
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "events": sent,
        "p50_seconds": histogram_quantile(age, "user_events_event_age_seconds", 0.5),
        "p99_seconds": histogram_quantile(age, "user_events_event_age_seconds", 0.99),
        "batch_p50_seconds": histogram_quantile(batch, "user_events_batch_duration_seconds", 0.5),
        "batch_p99_seconds": histogram_quantile(batch, "user_events_batch_duration_seconds", 0.99),
        **cpu_report(cpu, sent),
        "profiles": [str(path) for path in profiling.written],
    }
