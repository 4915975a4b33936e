"""Graceful shutdown under load and members joining and leaving a group under load: the
offsets stored in PostgreSQL always match what was applied, and nothing is skipped or
applied twice."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from user_events_devtools.devenv import free_port
from user_events_schemas import structured_record

from tests.integration.support import (
    Message,
    assert_history_applied_exactly_once,
    count_logged,
    eventually,
    get,
    kafka_committed_offsets,
    logged_at_least,
    logged_is,
    logged_offsets,
    new_settings,
    publish,
    read_all,
    running_service,
    sample_sum,
    scrape,
    start_service_process,
    stored_offsets,
    user_history,
)

pytestmark = pytest.mark.integration


async def publish_steadily(
    bootstrap: str, topic: str, messages: Sequence[Message], chunk: int, pause: float
) -> None:
    """A steady load: ``chunk`` records every ``pause`` seconds, in order."""
    for start in range(0, len(messages), chunk):
        await publish(bootstrap, topic, messages[start : start + chunk])
        await asyncio.sleep(pause)


async def assert_offsets_cover_exactly_what_was_logged(database: str, group: str) -> None:
    """Per partition: the event log holds every offset below the stored one, and no other."""
    stored = await stored_offsets(database, group)
    logged = await logged_offsets(database)
    assert set(logged) <= set(stored)
    for partition, next_offset in stored.items():
        assert logged.get(partition, []) == list(range(next_offset)), partition


async def test_sigterm_under_load_commits_the_batch_in_hand_and_exits_0_in_time(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    history = user_history(users=60, updates=9)
    messages = [structured_record(e) for e in history]
    log_path = tmp_path / "stderr.log"
    port = free_port()
    with log_path.open("wb") as stderr:
        process = start_service_process(
            settings,
            stderr,
            HTTP_PORT=str(port),
            KAFKA_MAX_POLL_RECORDS="20",
            SHUTDOWN_TIMEOUT_SECONDS="5",
            LOG_LEVEL="WARNING",
        )
    load: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: is_ready(port), timeout=40)
        load = asyncio.create_task(
            publish_steadily(bootstrap_servers, settings.kafka_topic, messages, chunk=20, pause=0.1)
        )
        await eventually(lambda: logged_at_least(database, 120), timeout=40)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        returncode = await asyncio.to_thread(process.wait, 5 + 2)
        elapsed = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        if load is not None:
            await load
    assert returncode == 0, log_path.read_text()[-2000:]
    assert elapsed < 5 + 2  # the shutdown timeout, plus the interpreter's own teardown

    # What the process committed is exactly what it applied, in PostgreSQL and in Kafka.
    logged = await count_logged(database)
    assert 0 < logged < len(history)
    await assert_offsets_cover_exactly_what_was_logged(database, settings.kafka_group_id)
    stored = await stored_offsets(database, settings.kafka_group_id)
    committed = await kafka_committed_offsets(
        bootstrap_servers, settings.kafka_group_id, settings.kafka_topic, 3
    )
    assert {p: o for p, o in committed.items() if o is not None} == stored
    # LOG_LEVEL is obeyed, and every line is a JSON object.
    levels = {json.loads(line)["level"] for line in log_path.read_text().splitlines()}
    assert levels <= {"WARNING", "ERROR", "CRITICAL"}

    # The next run starts where this one stopped: nothing skipped, nothing twice.
    async with running_service(settings):
        await eventually(lambda: logged_is(database, len(history)), timeout=40)
    await assert_history_applied_exactly_once(database, users=60, updates=9)
    await assert_offsets_cover_exactly_what_was_logged(database, settings.kafka_group_id)
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic) == []


async def is_ready(port: int) -> bool:
    return (await get(port, "/readyz"))[0] == 200


class Member:
    """One `run` process of the group, with its HTTP port and its log file."""

    def __init__(self, settings: Any, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("wb") as stderr:
            self.process = start_service_process(
                settings, stderr, HTTP_PORT=str(self.port), KAFKA_MAX_POLL_RECORDS="50"
            )

    async def partitions(self) -> set[int]:
        """The partitions it reports lag for: those it owns and has positioned."""
        return {
            int(dict(labels)["partition"])
            for name, labels in await scrape(self.port)
            if name == "user_events_consumer_lag"
        }

    async def listening(self) -> bool:
        return (await get(self.port, "/metrics"))[0] == 200

    async def duplicates(self) -> float:
        return sample_sum(
            await scrape(self.port), "user_events_messages_total", outcome="duplicate"
        )

    async def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        returncode: int = await asyncio.to_thread(self.process.wait, 30)
        if signum == signal.SIGTERM:
            assert returncode == 0, self.log_path.read_text()[-2000:]
        return returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def hold_all_partitions(members: Sequence[Member], count: int) -> bool:
    held = [await member.partitions() for member in members]
    return sorted(p for partitions in held for p in partitions) == list(range(count))


async def test_members_joining_and_dying_under_load_leave_the_exact_final_state(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=6)
    users, updates = 120, 24  # 25 s of load: it outlasts every membership change below
    messages = [structured_record(e) for e in user_history(users=users, updates=updates)]
    members = [Member(settings, tmp_path / f"member-{i}.log") for i in range(3)]
    load = asyncio.create_task(
        publish_steadily(bootstrap_servers, settings.kafka_topic, messages, chunk=60, pause=0.5)
    )
    try:
        await eventually(lambda: logged_at_least(database, 200), timeout=40)
        # One member dies without a word: its partitions wait out its session, then move.
        assert await members[1].stop(signal.SIGKILL) == -signal.SIGKILL
        members.append(Member(settings, tmp_path / "member-3.log"))  # and a new one joins meanwhile
        # A process started on a loaded machine (four test workers on two cores, four
        # members here) may take a while to import and listen: that is not what is tested.
        await eventually(members[3].listening, timeout=90)
        progress = await count_logged(database)
        await eventually(lambda: logged_at_least(database, progress + 300), timeout=40)
        # The live members hold every partition between them: the dead one's session
        # has expired. (The embedded broker can elect a dead member group leader, and
        # then never completes a rebalance, if another member leaves before that.)
        live = [members[0], members[2], members[3]]
        await eventually(lambda: hold_all_partitions(live, 6), timeout=40)
        # One leaves cleanly, handing its partitions over at a batch boundary.
        assert await members[2].duplicates() == 0
        assert await members[2].stop(signal.SIGTERM) == 0
        await eventually(lambda: hold_all_partitions([members[0], members[3]], 6), timeout=40)
        await load
        await eventually(lambda: logged_is(database, len(messages)), timeout=60)
        for member in (members[0], members[3]):
            assert await member.duplicates() == 0  # no record was applied twice
            assert await member.stop(signal.SIGTERM) == 0
    finally:
        load.cancel()
        for member in members:
            member.kill()
            print(member.log_path, member.log_path.read_text()[-3000:])  # shown on failure

    await assert_history_applied_exactly_once(database, users=users, updates=updates)
    per_partition: dict[int, int] = {}
    for record in await read_all(bootstrap_servers, settings.kafka_topic):
        per_partition[record.partition] = per_partition.get(record.partition, 0) + 1
    assert await stored_offsets(database, settings.kafka_group_id) == per_partition
    await assert_offsets_cover_exactly_what_was_logged(database, settings.kafka_group_id)
    assert await read_all(bootstrap_servers, settings.kafka_dlq_topic) == []
