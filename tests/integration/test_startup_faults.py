"""Faults at start: a signal while a peer is unreachable ends the real `run` process at
once and cleanly, and a configuration mistake (a database that does not exist, a role
refused) is named in one line and exits 2, in `run` and in the tools. Real PostgreSQL,
and a closed port where a peer should be."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from user_events_devtools.devenv import free_port

from consumer.edges.migrate import MIGRATION_LOCK_KEY
from tests.conftest import database_url
from tests.integration.support import eventually, new_settings, service_env
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT = 4.0
# What asyncio logs for a task error nobody retrieved, or a task left running.
ORPHANS = ("never retrieved", "was destroyed but it is pending", "Traceback", "Unclosed")


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "run"],
        env={**env, "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT), "LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def logged(log: Path) -> str:
    return log.read_text()


async def retrying(log: Path, operation: str) -> None:
    """Until the process logs that it retries ``operation``: it is waiting on that peer."""
    deadline = time.monotonic() + 30
    while f'"operation": "{operation}"' not in logged(log):
        assert time.monotonic() < deadline, logged(log)
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_kafka_is_unreachable_at_start_exits_0_at_once(
    bootstrap_servers: str, database: str, tmp_path: Path, signum: signal.Signals
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    env = {**service_env(settings), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    log = tmp_path / "run.log"
    process = start_run(env, log)
    try:
        await retrying(log, "kafka_connect")
        signalled = time.monotonic()
        process.send_signal(signum)
        code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 2)
        took = time.monotonic() - signalled
    finally:
        process.kill()
    text = logged(log)
    assert code == 0, text
    assert took < SHUTDOWN_TIMEOUT, (took, text)
    assert '"message": "stopped while starting"' in text
    assert not any(orphan in text for orphan in ORPHANS), text


async def test_a_signal_while_postgresql_is_unreachable_at_start_exits_0_at_once(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    env = {**service_env(settings, DB_CONNECT_TIMEOUT_SECONDS="1"), "DATABASE_URL": closed}
    log = tmp_path / "run.log"
    process = start_run(env, log)
    try:
        await retrying(log, "db_connect")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 2)
    finally:
        process.kill()
    text = logged(log)
    assert code == 0, text
    assert not any(orphan in text for orphan in ORPHANS), text


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("database", 'database "t_no_such_db" does not exist'),
        ("role", 'role "no_such_role" does not exist'),
    ],
)
async def test_a_configuration_mistake_is_named_in_one_line_and_exits_2(
    bootstrap_servers: str, database: str, server_url: str, tmp_path: Path, mistake: str, says: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    if mistake == "database":
        wrong = database_url(server_url, "t_no_such_db")
    else:
        wrong = database.replace("://postgres@", "://no_such_role@", 1)
        assert wrong != database  # the suite's server is reached as postgres
    env = {**service_env(settings), "DATABASE_URL": wrong}
    log = tmp_path / "run.log"
    process = start_run(env, log)
    try:
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    text = logged(log)
    assert code == 2, text
    errors = [e for e in map(json.loads, text.splitlines()) if e["level"] == "ERROR"]
    assert [e["message"] for e in errors] == [
        f"PostgreSQL refused the connection: {says} (check DATABASE_URL)"
    ], text
    assert "DatabaseUnreachable" not in text and "Traceback" not in text

    ended = await run_cli(["status"], env)
    assert ended.code == 2
    assert ended.error_line == (
        f"user-events-consumer: PostgreSQL refused the connection: {says} (check DATABASE_URL)"
    )


async def test_a_signal_while_migrating_waits_for_no_lock_and_exits_0(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    """Another replica holds the migrations' lock (a long migration): the signal ends
    the wait."""
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    holder = await asyncpg.connect(database)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        log = tmp_path / "run.log"
        process = start_run(service_env(settings), log)
        try:

            async def waiting_for_the_lock() -> bool:
                return bool(
                    await holder.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                )

            await eventually(waiting_for_the_lock)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 2)
        finally:
            process.kill()
    finally:
        await holder.close()
    text = logged(log)
    assert code == 0, text
    assert '"message": "stopped while starting"' in text
    assert not any(orphan in text for orphan in ORPHANS), text


async def test_a_server_without_tls_when_sslmode_requires_it_is_named_and_exits_2(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    conn = await asyncpg.connect(database)
    try:
        tls = await conn.fetchval("SHOW ssl")
    finally:
        await conn.close()
    if tls == "on":
        # This suite's servers run without TLS (the local one and the embedded one); a
        # server with it cannot refuse it.
        pytest.skip("the suite's PostgreSQL server speaks TLS")
    parts = urlsplit(database)
    host, port = parts.hostname, parts.port or 5432
    env = {**service_env(settings), "DATABASE_URL": f"{database}?sslmode=require"}
    log = tmp_path / "run.log"
    process = start_run(env, log)
    try:
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    text = logged(log)
    says = f"the server at {host}:{port} does not accept TLS, which sslmode asks for"
    assert code == 2, text
    errors = [e for e in map(json.loads, text.splitlines()) if e["level"] == "ERROR"]
    assert [e["message"] for e in errors] == [
        f"PostgreSQL refused the connection: {says} (check DATABASE_URL)"
    ], text
    ended = await run_cli(["status"], env)
    assert ended.code == 2 and says in ended.error_line
