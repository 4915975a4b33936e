"""Stored offsets past the end of a log (a topic younger than the offsets in PostgreSQL):
held and reported by default, or reset to the log's beginning or end and recorded, as
OFFSET_PAST_END says. Real broker, real PostgreSQL, the real `run` process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from user_events_devtools.devenv import free_port

from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from tests import factories
from tests.integration.support import (
    eventually,
    fetch,
    get,
    logged_is,
    new_settings,
    publish,
    scrape,
    service_env,
    stored_offsets,
)

pytestmark = pytest.mark.integration

PAST = 50  # where the stored offset stands; the log holds 3 records


def created(user: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = factories.created(user, name=user, source="/past-end")
    return (user.encode(), orjson.dumps(event), [])


async def younger_log(bootstrap: str, database: str) -> Settings:
    """A topic of 3 records whose stored offset, for the group, is 50."""
    settings = await new_settings(bootstrap, database, partitions=1)
    store = await open_tool_store(settings)
    try:
        await store.claim_offsets(settings.kafka_group_id, {(settings.kafka_topic, 0): PAST})
    finally:
        await store.close()
    await publish(bootstrap, settings.kafka_topic, [created(f"p{i}") for i in range(3)])
    return settings


def start(settings: Settings, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "run"],
        env={**service_env(settings), "HTTP_PORT": str(port), "LOG_FORMAT": "json", **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    finally:
        process.kill()


def errors_in(log: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    # The service's own: aiokafka logs the embedded broker's refusal of InitProducerId.
    return [
        line
        for line in lines
        if line["level"] == "ERROR" and str(line["logger"]).startswith("consumer.")
    ]


async def test_by_default_the_partition_is_held_reported_and_nothing_is_lost(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await younger_log(bootstrap_servers, database)
    port, log = free_port(), tmp_path / "run.log"
    process = start(settings, port, log)
    try:

        async def held() -> bool:
            status, body = await get(port, "/status")
            if status != 200:
                return False
            rows = json.loads(body).get("partitions")  # none while still starting
            held = "held: its stored offset is past the end of the log"
            return bool(rows) and rows[0]["state"] == held

        await eventually(held)
        samples = await scrape(port)
        key = ("partition", "0"), ("topic", settings.kafka_topic)
        assert samples[("user_events_offset_past_end", key)] == 1
        await asyncio.sleep(1)  # more rounds of the loop: still one ERROR, nothing applied
        errors = await asyncio.to_thread(errors_in, log)
        assert len(errors) == 1, await asyncio.to_thread(log.read_text)
        [error] = errors
        assert (error["stored_offset"], error["high_watermark"]) == (PAST, 3)
        assert "OFFSET_PAST_END" in str(error["message"])
        assert await logged_is(database, 0)
        assert await stored_offsets(database, settings.kafka_group_id) == {0: PAST}
    finally:
        assert await asyncio.to_thread(stop, process) == 0


@pytest.mark.parametrize(("mode", "reset_to", "applied"), [("earliest", 0, 3), ("latest", 3, 0)])
async def test_a_reset_moves_the_stored_offset_and_records_it(
    bootstrap_servers: str, database: str, tmp_path: Path, mode: str, reset_to: int, applied: int
) -> None:
    settings = await younger_log(bootstrap_servers, database)
    port, log = free_port(), tmp_path / "run.log"
    process = start(settings, port, log, OFFSET_PAST_END=mode)
    try:

        async def reset() -> bool:
            return bool(await fetch(database, "SELECT 1 FROM offset_resets"))

        await eventually(reset)
        [row] = await fetch(database, "SELECT * FROM offset_resets")
        assert (row["partition"], row["old_offset"], row["new_offset"]) == (0, PAST, reset_to)
        assert f"OFFSET_PAST_END={mode}" in row["reason"]
        await eventually(lambda: logged_is(database, applied))
        # What comes next is applied as usual, once.
        await publish(bootstrap_servers, settings.kafka_topic, [created("next")])
        await eventually(lambda: logged_is(database, applied + 1))
        await eventually(lambda: _stored_is(database, settings.kafka_group_id, 4))
        assert await asyncio.to_thread(errors_in, log) == []
    finally:
        assert await asyncio.to_thread(stop, process) == 0


async def _stored_is(database: str, group: str, offset: int) -> bool:
    return await stored_offsets(database, group) == {0: offset}
