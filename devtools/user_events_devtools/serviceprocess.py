"""The service under test: `user-events-consumer run` in a subprocess, and what the bench
reads of it from outside (readiness, stored offsets, /metrics, its peak RSS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from consumer.settings import Settings

SERVICE_COMMAND = [sys.executable, "-m", "consumer.cli", "run"]


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


async def wait_until_ready(port: int, alive: Callable[[], bool]) -> None:
    """Until the service on ``port`` answers /readyz with 200."""
    while True:
        with contextlib.suppress(OSError):
            status, _ = await _http_get(port, "/readyz")
            if status == 200:
                return
        if not alive():
            raise RuntimeError("the consumer exited before it was ready")
        await asyncio.sleep(0.05)


async def wait_for_offsets(
    conn: asyncpg.Connection,
    group: str,
    ends: dict[int, int],
    alive: Callable[[], bool],
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


async def scrape(port: int) -> str:
    """The service's /metrics exposition."""
    return (await _http_get(port, "/metrics"))[1]


GC_GENERATIONS = 3


def gc_collections(text: str) -> list[int]:
    """The cyclic collections a process has made, young to old, read off its /metrics
    exposition (prometheus_client's ``python_gc_collections_total``; zeros without it)."""
    counts = [0] * GC_GENERATIONS
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "python_gc_collections_total":
                generation = int(sample.labels["generation"])
                if generation < GC_GENERATIONS:
                    counts[generation] = int(sample.value)
    return counts


async def _http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


def peak_rss_mb(pid: int) -> float:
    """Peak RSS in MB of a running process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]
