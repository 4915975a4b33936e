"""Real servers for the whole suite: the broker and PostgreSQL named by the environment
(KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL), else embedded ones started here."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from user_events_devtools.devenv import EmbeddedBroker, EmbeddedPostgres

# Started first, so that no worker of make test is left running one of these alone at the
# end: they wait out outages, rebalances and crashes for 10 to 40 s each.
_LONGEST_FIRST = {
    "test_outages.py",
    "test_shutdown_rebalance.py",
    "test_crashes.py",
    "test_hostile_records.py",
    "test_parking_tools.py",
    "test_runtime_install.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in _LONGEST_FIRST)  # stable: in order


@pytest.fixture(scope="session")
def bootstrap_servers() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    broker = EmbeddedBroker().start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL server the suite creates its databases on."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield server.url
    finally:
        server.stop(mode="immediate")


def database_url(server: str, name: str) -> str:
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield database_url(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
