"""Versioned plain-SQL migrations, applied each in a transaction under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from consumer.edges.store import Connection
from consumer.edges.store_log import add_days_ahead

log = logging.getLogger(__name__)

# Any constant will do, as long as every replica uses the same one.
MIGRATION_LOCK_KEY = 0x7573_6572_6576_7473  # "userevts"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_APPLIED = "SELECT version FROM schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def shipped_migrations() -> list[Migration]:
    """The migrations in the package, in version order."""
    found = []
    for entry in resources.files("consumer").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def apply_migrations(conn: Connection, through: int | None = None) -> list[Migration]:
    """Apply what is missing (up to version ``through``, by default all); several
    replicas starting at once queue on the lock."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {row["version"] for row in await conn.fetch(_APPLIED)}
        done: list[Migration] = []
        for migration in shipped_migrations():
            if migration.version in applied:
                continue
            if through is not None and migration.version > through:
                return done
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info(
                "applied migration",
                extra={"version": migration.version, "migration": migration.name},
            )
            done.append(migration)
        # The log's partitions for today and the coming days: a database migrated on
        # an earlier day, and not kept since, may lack them.
        await add_days_ahead(conn)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def missing_migrations(conn: Connection) -> list[Migration]:
    """The shipped migrations the database lacks, found without writing anything (no
    lock, no table created): what a read-only tool checks before it reads."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return shipped_migrations()
    applied = {row["version"] for row in await conn.fetch(_APPLIED)}
    return [migration for migration in shipped_migrations() if migration.version not in applied]
