"""Dry runs and read-only tools change nothing, not even the schema: on a database whose
schema is behind the shipped migrations they say so in one line and exit 2; the tools
that write keep applying the migrations."""

from __future__ import annotations

import asyncpg
import pytest

from consumer.edges.migrate import apply_migrations, shipped_migrations
from consumer.settings import Settings
from tests.integration.support import new_settings, service_env
from tests.integration.test_tool_exits import run_cli

pytestmark = pytest.mark.integration

# Each with its exit code on a current schema (nothing to find: `event` exits 1).
CHANGE_NOTHING = {
    "replay --dry-run": (["replay", "--from", "earliest", "--dry-run"], 0),
    "dlq redrive --dry-run": (["dlq", "redrive", "--dry-run"], 0),
    "rebuild --dry-run": (["rebuild", "--dry-run"], 0),
    "erase --dry-run": (["erase", "--user-id", "u-1", "--reason", "ticket 1", "--dry-run"], 0),
    "prune --dry-run": (["prune", "--older-than", "30d", "--dry-run"], 0),
    "status": (["status"], 0),
    "event": (["event", "--source", "/signup", "--id", "e-1"], 1),
}

Schema = tuple[list[str], list[int]]


async def schema_of(database: str) -> Schema:
    """The tables of the public schema and the migration versions recorded."""
    conn = await asyncpg.connect(database)
    try:
        tables = [
            row["tablename"]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        versions = []
        if "schema_migrations" in tables:
            versions = [
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            ]
        return tables, sorted(versions)
    finally:
        await conn.close()


async def only_the_first_migration(database: str) -> None:
    """The database as the first release left it: migration 0001 and nothing after."""
    first = shipped_migrations()[0].version
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn, through=first)
    finally:
        await conn.close()


async def settings_and_env(bootstrap: str, database: str) -> tuple[Settings, dict[str, str]]:
    settings = await new_settings(bootstrap, database, partitions=1)
    return settings, service_env(settings)


@pytest.mark.parametrize("tool", CHANGE_NOTHING)
async def test_a_dry_run_or_read_only_tool_on_a_schema_behind_says_so_exits_2_and_leaves_the_schema_alone(
    bootstrap_servers: str, database: str, tool: str
) -> None:
    _, env = await settings_and_env(bootstrap_servers, database)
    await only_the_first_migration(database)
    before = await schema_of(database)
    assert before[1] == [1] and "dlq_redrives" not in before[0]
    ended = await run_cli(CHANGE_NOTHING[tool][0], env)
    assert ended.code == 2 and not ended.stdout
    missing = ", ".join(f"{m.version:04d}_{m.name}" for m in shipped_migrations()[1:])
    assert f"schema is behind this version (missing {missing})" in ended.error_line
    assert "run `user-events-consumer migrate` first" in ended.error_line
    assert await schema_of(database) == before


async def test_a_read_only_tool_on_an_empty_database_creates_not_even_the_migrations_table(
    bootstrap_servers: str, database: str
) -> None:
    _, env = await settings_and_env(bootstrap_servers, database)
    ended = await run_cli(CHANGE_NOTHING["status"][0], env)
    assert ended.code == 2
    assert "the database has none of this version's tables" in ended.error_line
    assert await schema_of(database) == ([], [])


async def test_on_a_current_schema_they_run_and_a_real_run_still_migrates(
    bootstrap_servers: str, database: str
) -> None:
    _, env = await settings_and_env(bootstrap_servers, database)
    await only_the_first_migration(database)
    upgraded = await run_cli(["rebuild"], env)
    assert upgraded.code == 0 and "rebuilt users from 0 logged events" in upgraded.stdout
    current = await schema_of(database)
    assert current[1] == [m.version for m in shipped_migrations()]
    for tool, code in CHANGE_NOTHING.values():
        ended = await run_cli(tool, env)
        assert ended.code == code, (tool, ended.stderr)
    assert await schema_of(database) == current
