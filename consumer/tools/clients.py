"""A tool's clients: PostgreSQL and Kafka, opened once, failing fast (no retries, unlike
``run``). A dry run or a read-only tool changes nothing, not even the schema: it applies
no migration, and refuses to run on a schema older than the shipped migrations.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from consumer.edges.kafka import start_producer
from consumer.edges.migrate import (
    Migration,
    apply_migrations,
    missing_migrations,
    shipped_migrations,
)
from consumer.edges.store import Store
from consumer.settings import Settings
from consumer.tools.errors import ToolError


async def open_tool_store(settings: Settings, *, migrate: bool = True) -> Store:
    """The pool for a tool, with the shipped migrations applied (idempotent, locked).

    ``migrate=False`` (dry runs, read-only tools) applies none and checks instead:
    ``ToolError`` when the schema lacks a shipped migration."""
    try:
        store = await Store.open(settings)
    except ssl.SSLError:
        raise  # a ValueError too, but a certificate's, not the URL's
    except ValueError as exc:  # asyncpg's reading of the URL; its message may quote it
        raise ToolError(
            f"invalid DATABASE_URL: not a PostgreSQL URL ({type(exc).__name__})"
        ) from None
    try:
        async with store.pool.acquire() as conn:
            if migrate:
                await apply_migrations(conn)
            elif missing := await missing_migrations(conn):
                raise ToolError(schema_behind(missing, len(shipped_migrations())))
    except BaseException:
        await store.close()
        raise
    return store


def schema_behind(missing: Sequence[Migration], shipped: int) -> str:
    """The line a tool that may not migrate says when the schema lacks ``missing``."""
    if len(missing) == shipped:
        state = "the database has none of this version's tables"
    else:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        state = f"the database schema is behind this version (missing {names})"
    return (
        f"{state}: run `user-events-consumer migrate` first "
        "(a dry run or a read-only tool changes nothing, not even the schema)"
    )


@asynccontextmanager
async def tool_store(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Store]:
    """``open_tool_store`` for the block, closed after."""
    store = await open_tool_store(settings, migrate=migrate)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def tool_producer(
    settings: Settings, *, enabled: bool = True
) -> AsyncIterator[AIOKafkaProducer | None]:
    """A started producer for the block, stopped after; None when not ``enabled`` (a dry
    run publishes nothing)."""
    if not enabled:
        yield None
        return
    producer = await start_producer(settings, linger_ms=5)
    try:
        yield producer
    finally:
        await producer.stop()
