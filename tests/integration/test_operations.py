"""The operational surface of a live `run` process: its HTTP endpoints, metrics that agree
with the database and the dead-letter topic, and JSON logs free of personal data."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from user_events_devtools.devenv import free_port
from user_events_schemas import build_event, structured_record

from consumer import __version__
from tests.deploy.tools import promtool
from tests.integration.support import (
    eventually,
    fetch,
    get,
    logged_is,
    logged_offsets,
    new_settings,
    publish,
    read_all,
    sample,
    sample_sum,
    scrape,
    start_service_process,
    user_history,
)

pytestmark = pytest.mark.integration

PII_NAME = "Ada Lovelace-Byron"
PII_EMAIL = "ada.lovelace@example.com"


def with_password(url: str, password: str) -> tuple[str, str]:
    """``url`` carrying a password (kept if it has one; trust auth ignores an added one)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def poison_and_conflicts() -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Records that must be dead-lettered (one of each kind) and one stale update."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    not_json = (b"user-0", b"{ not json " + PII_EMAIL.encode(), [])
    valid = build_event(
        "user.created", "user-x", {"email": PII_EMAIL, "name": PII_NAME}, source="/tests"
    )
    invalid = structured_record({**valid, "data": {"email": "not-an-address", "name": PII_NAME}})
    unknown_type = structured_record(
        {
            **build_event(
                "user.created", "user-y", {"email": PII_EMAIL, "name": PII_NAME}, source="/tests"
            ),
            "type": "user.renamed",
        }
    )
    # user-1's address belongs to user-1: a business rejection of a well-formed event.
    conflict = structured_record(
        build_event(
            "user.created",
            "thief",
            {"email": "user-1@example.com", "name": PII_NAME},
            source="/tests",
            sequence=1,
            time=t0,
            event_id="conflict-1",
        )
    )
    stale = structured_record(
        build_event(
            "user.updated",
            "user-2",
            {"name": PII_NAME},
            source="/history",
            sequence=2,
            time=t0,
            event_id="stale-1",
        )
    )
    return [not_json, invalid, unknown_type, conflict, stale]


def provenance(dead_letter: Any) -> tuple[str, int, int]:
    """The topic, partition and offset a dead letter's headers name."""
    headers = {name: value.decode() for name, value in dead_letter.headers}
    return (
        headers["dlq.original.topic"],
        int(headers["dlq.original.partition"]),
        int(headers["dlq.original.offset"]),
    )


async def test_a_live_process_serves_endpoints_counts_what_it_wrote_and_logs_safely(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    database_with_secret, secret = with_password(database, f"s3cret-{uuid.uuid4().hex[:8]}")
    settings = await new_settings(bootstrap_servers, database_with_secret, partitions=3)
    history = [structured_record(e) for e in user_history(users=30, updates=3)]
    port = free_port()
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as stderr:
        process = start_service_process(settings, stderr, HTTP_PORT=str(port), LOG_LEVEL="DEBUG")
    try:
        # Keyed history on every partition, then its first ten again; once it is applied
        # (the conflict needs user-1 to hold its address first), the poison.
        await publish(bootstrap_servers, settings.kafka_topic, history + history[:10])
        await eventually(lambda: logged_is(database, len(history)), timeout=40)
        await publish(bootstrap_servers, settings.kafka_topic, poison_and_conflicts())
        total = len(history) + 10 + 5

        async def handled_all() -> bool:
            if (await get(port, "/metrics"))[0] != 200:
                return False
            return sample_sum(await scrape(port), "user_events_messages_total") == total

        await eventually(handled_all, timeout=40)

        async def caught_up() -> bool:  # the lag gauge follows the commits while idle
            samples = await scrape(port)
            lags = [
                sample(
                    samples,
                    "user_events_consumer_lag",
                    topic=settings.kafka_topic,
                    partition=str(p),
                )
                for p in range(3)
            ]
            return lags == [0, 0, 0]

        await eventually(caught_up, timeout=10)
        status, body = await get(port, "/metrics")
        samples = await scrape(port)

        # The counters agree with the database and the dead-letter topic. The conflict
        # waits, parked, for its email (docs/parking.md).
        by_outcome = {
            r["outcome"]: r["n"]
            for r in await fetch(
                database, "SELECT outcome, count(*) AS n FROM user_events GROUP BY outcome"
            )
        }
        assert by_outcome == {"applied": len(history), "stale": 1}
        dead = await read_all(bootstrap_servers, settings.kafka_dlq_topic)
        topic = settings.kafka_topic
        messages = {
            outcome: sample(samples, "user_events_messages_total", topic=topic, outcome=outcome)
            for outcome in ("applied", "duplicate", "stale", "parked", "dead_lettered")
        }
        assert messages == {
            "applied": len(history),
            "duplicate": 10,
            "stale": 1,
            "parked": 1,
            "dead_lettered": len(dead),
        }
        assert len(dead) == 3
        reasons = {
            reason: sample(samples, "user_events_dead_letters_total", reason=reason)
            for reason in ("undecodable", "invalid", "unknown_type", "conflict")
        }
        assert reasons == {"undecodable": 1, "invalid": 1, "unknown_type": 1, "conflict": 0}
        assert sample(samples, "user_events_parked_total", reason="conflict") == 1
        assert len(await fetch(database, "SELECT 1 FROM parked_events")) == 1
        assert sample_sum(samples, "user_events_dead_letters_total") == len(dead)
        logged = sum(len(o) for o in (await logged_offsets(database)).values())
        assert sample(samples, "user_events_event_age_seconds_count") == logged
        assert sample(samples, "user_events_batch_size_sum") == total
        assert (sample(samples, "user_events_batch_duration_seconds_count") or 0) >= 1
        assert (sample(samples, "user_events_last_commit_timestamp_seconds") or 0) > 0
        assert (sample(samples, "user_events_rebalances_total") or 0) >= 1
        assert sample(samples, "user_events_partitions_paused") == 0
        assert sample(samples, "user_events_db_up") == 1
        assert sample(samples, "user_events_kafka_up") == 1
        pool = {
            state: sample(samples, "user_events_db_pool_connections", state=state)
            for state in ("in_use", "idle")
        }
        assert None not in pool.values() and sum(pool.values()) >= 1  # type: ignore[arg-type]
        assert (sample(samples, "process_cpu_seconds_total") or 0) > 0
        assert sample_sum(samples, "python_info") == 1
        # The version it runs, set once at start: one series, at 1.
        assert sample(samples, "user_events_build_info", version=__version__) == 1
        assert sample_sum(samples, "user_events_build_info") == 1
        assert "# TYPE user_events_retries_total counter" in body

        # promtool lints the live exposition without a complaint.
        checked = subprocess.run(
            [promtool(), "check", "metrics"], input=body, capture_output=True, text=True
        )
        assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), (
            checked.stdout + checked.stderr
        )

        # Liveness, readiness and a stalled client that does not hold up anyone else.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the request
        assert await get(port, "/healthz") == (200, '{"status":"ok"}\n')
        status, ready = await get(port, "/readyz")
        assert (status, json.loads(ready)) == (200, {"status": "ready"})
        assert (await get(port, "/nowhere"))[0] == 404
        writer.close()
    finally:
        process.terminate()
        returncode = await asyncio.to_thread(process.wait, 30)
    assert returncode == 0

    # One JSON object a line; a line per dead letter naming its record; no personal data.
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    dead_lines = [e for e in lines if e["message"] == "record dead-lettered"]
    where = {(e["topic"], e["partition"], e["offset"]) for e in dead_lines}
    assert where == {provenance(record) for record in dead}
    assert {e["reason"] for e in dead_lines} == {r for r, n in reasons.items() if n}
    parked_lines = [e for e in lines if e["message"] == "event parked"]
    assert [(e["reason"], e.get("event_id")) for e in parked_lines] == [("conflict", "conflict-1")]
    assert secret not in text
    assert "@example.com" not in text and PII_NAME not in text
    assert not re.search(r"user-\d+ v\d+", text)  # the names user_history gives
