"""`status` on the real broker and PostgreSQL: lag in records and seconds per partition,
an exit code for cron checks, and a live group left exactly as it was."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from user_events_schemas import build_event, structured_record

from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from consumer.tools.status.gather import gather_status
from tests.integration.support import (
    eventually,
    logged_is,
    new_settings,
    publish,
    running_service,
    service_env,
)
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration


async def publish_aged(bootstrap: str, topic: str, partition: int, ages: list[float]) -> None:
    """One record per age (seconds before now) on ``partition``, with that timestamp."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for i, age in enumerate(ages):
            await producer.send(
                topic,
                value=b"{}",
                key=f"k{i}".encode(),
                partition=partition,
                timestamp_ms=now_ms - int(age * 1000),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def group_members(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        answers = await admin.describe_consumer_groups([settings.kafka_group_id])
        return sorted(m[0] for answer in answers for g in answer.groups for m in g[5])
    finally:
        await admin.close()


def by_partition(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in report["partitions"]}


async def test_status_shows_lag_zero_when_caught_up_and_the_age_of_unapplied_records(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    topic = settings.kafka_topic
    await publish_aged(bootstrap_servers, topic, 0, [10, 5, 1])
    await publish_aged(bootstrap_servers, topic, 1, [300, 200, 100, 50])
    await publish_aged(bootstrap_servers, topic, 2, [30, 20])
    store = await open_tool_store(settings)
    try:
        # Partition 0 fully applied, partition 1 up to its first record, 2 never read.
        await store.claim_offsets(settings.kafka_group_id, {(topic, 0): 3, (topic, 1): 1})
        report = (await gather_status(settings, store)).to_json()
    finally:
        await store.close()
    partitions = by_partition(report)
    caught_up, behind, unread = partitions[0], partitions[1], partitions[2]
    assert (caught_up["stored_offset"], caught_up["high_watermark"]) == (3, 3)
    assert caught_up["lag_records"] == 0 and caught_up["lag_seconds"] == 0
    assert caught_up["oldest_unapplied_offset"] is None and caught_up["last_commit"]
    assert (behind["stored_offset"], behind["high_watermark"], behind["lag_records"]) == (1, 4, 3)
    assert behind["oldest_unapplied_offset"] == 1 and 200 <= behind["lag_seconds"] < 260
    assert (unread["stored_offset"], unread["read_from"], unread["lag_records"]) == (
        None,
        "beginning",
        2,
    )
    assert 30 <= unread["lag_seconds"] < 90 and unread["last_commit"] is None
    assert all(p["kafka_committed"] is None for p in partitions.values())
    assert report["group_state"] in (None, "Empty", "Dead") and report["lagging"] == []

    env = service_env(settings)
    within = await run_cli(["status", "--max-lag-seconds", "600"], env)
    assert within.code == 0 and "every partition within 600 s" in within.stdout
    over = await run_cli(["status", "--max-lag-seconds", "120", "--json"], env)
    assert over.code == 1 and json.loads(over.stdout)["lagging"] == [1]
    table = await run_cli(["status", "--max-lag-seconds", "120"], env)
    assert table.code == 1 and "lag over 120 s on partitions 1" in table.stdout
    assert "nothing stored in PostgreSQL for partitions 2" in table.stdout
    bad = await run_cli(["status", "--max-lag-seconds", "-1"], env)
    assert bad.code == 2 and "--max-lag-seconds must be" in bad.error_line


async def test_status_beside_a_live_consumer_neither_joins_nor_rebalances_its_group(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    env = service_env(settings)
    events = [
        structured_record(
            build_event(
                "user.created",
                f"s{i}",
                {"email": f"s{i}@example.com", "name": "S"},
                source="/tests",
            )
        )
        for i in range(8)
    ]
    async with running_service(settings):
        await publish(bootstrap_servers, settings.kafka_topic, events)
        await eventually(lambda: logged_is(database, len(events)))

        async def kafka_caught_up() -> bool:
            ended = await run_cli(["status", "--json"], env)
            partitions = by_partition(json.loads(ended.stdout))
            return all(p["kafka_committed"] == p["stored_offset"] for p in partitions.values())

        await eventually(kafka_caught_up)
        rebalances = REGISTRY.get_sample_value("user_events_rebalances_total")
        members = await group_members(settings)
        assert len(members) == 1

        ended = await run_cli(["status", "--json"], env)
        assert ended.code == 0
        report = json.loads(ended.stdout)
        assert report["group_state"] == "Stable"
        assert [m["member_id"] for m in report["group_members"]] == members
        for p in report["partitions"]:
            assert p["stored_offset"] == p["kafka_committed"] == p["high_watermark"]
            assert p["lag_records"] == 0 and p["lag_seconds"] == 0 and p["last_commit"]
        # A member that joined would have the live one rebalanced at its next heartbeat.
        await asyncio.sleep(4)
        assert REGISTRY.get_sample_value("user_events_rebalances_total") == rebalances
        assert await group_members(settings) == members
