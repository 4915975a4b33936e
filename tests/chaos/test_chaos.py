"""`make chaos`: a seeded random schedule of faults against both peers during a drain,
with SIGTERMs and restarts mixed in; at the end the state must equal a single clean
pass, with no dead letter. Kept out of `make test`: it runs for CHAOS_SECONDS (300 by
default). CHAOS_SEED replays a schedule; the seed is printed either way."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from user_events_devtools.devenv import free_port

from tests.integration.support import (
    assert_history_applied_exactly_once,
    eventually,
    logged_is,
    new_settings,
    publish,
    read_all,
    user_history,
)
from tests.integration.test_network_faults import (
    broker_behind_proxy,
    logged,
    messages,
    postgresql_behind_proxy,
    start_run,
)

pytestmark = pytest.mark.integration

USERS, UPDATES = 60, 49  # 3,000 events
FAULTS = ("pass", "refuse", "blackhole")


async def test_a_seeded_storm_of_faults_ends_in_the_state_of_one_clean_pass(
    database: str, tmp_path: Path
) -> None:
    seconds = float(os.environ.get("CHAOS_SECONDS", "300"))
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(2**32)))
    print(f"\nchaos: seed {seed}, {seconds:.0f} s (CHAOS_SEED={seed} replays it)", flush=True)
    rng = random.Random(seed)
    history = user_history(USERS, UPDATES)
    chunks = [history[i : i + 100] for i in range(0, len(history), 100)]
    async with (
        broker_behind_proxy() as (kafka, bootstrap),
        postgresql_behind_proxy(database) as (postgres, url),
    ):
        settings = await new_settings(bootstrap, database, partitions=3)
        port = free_port()
        runs = 0

        def start() -> subprocess.Popen[bytes]:
            nonlocal runs
            runs += 1
            return start_run(settings, url, port, tmp_path / f"run-{runs}.log")

        process = start()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if chunks and rng.random() < 0.5:
                    # Publishers reach the broker whatever the consumer goes through.
                    await kafka.set("pass")
                    await publish(bootstrap, settings.kafka_topic, messages(chunks.pop(0)))
                action = rng.choice(("postgres", "kafka", "restart", "calm"))
                if action == "postgres":
                    await postgres.set(rng.choice(FAULTS))
                elif action == "kafka":
                    await kafka.set(rng.choice(FAULTS))
                elif action == "restart":
                    process.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(process.wait, 30)
                    text = await asyncio.to_thread(logged, tmp_path / f"run-{runs}.log")
                    assert code == 0, (seed, text)
                    assert "never retrieved" not in text, (seed, text)
                    process = start()
                else:
                    await postgres.set("pass")
                    await kafka.set("pass")
                await asyncio.sleep(rng.uniform(0.5, 3.0))
            await postgres.set("pass")
            await kafka.set("pass")
            for chunk in chunks:
                await publish(bootstrap, settings.kafka_topic, messages(chunk))
            await eventually(lambda: logged_is(database, len(history)), timeout=180)
        finally:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0, seed
        await assert_history_applied_exactly_once(database, USERS, UPDATES)
        assert await read_all(bootstrap, settings.kafka_dlq_topic) == [], seed
        print(f"chaos: seed {seed}: {runs} runs, every event applied exactly once", flush=True)
