"""What every operator tool shares: its error, argument parsing, and its clients.

A tool opens PostgreSQL and Kafka once and fails fast: no retries, unlike ``run``. The
runner (``consumer.tools.runner``) turns what fails into one line and an exit code. A
dry run or a read-only tool changes nothing, not even the schema: it applies no
migration, and refuses to run on a schema older than the shipped migrations.
"""

from __future__ import annotations

import argparse
import re
import ssl
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

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

PAIRS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")
POSITION = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*$")  # signed: to say what is wrong


class ToolError(Exception):
    """A problem the operator can fix (a missing topic, another redrive running): one
    line, exit 2."""


class BadArgument(ToolError, ValueError):
    """An argument that does not parse or is out of range."""


def fail(message: str, code: int = 2) -> int:
    """Say why a tool stopped, in one line on stderr; returns its exit code (by default 2:
    it could not run)."""
    print(f"user-events-consumer: {message}", file=sys.stderr)
    return code


TIME_EXAMPLE = "2026-01-01T00:00:00Z"
PAIRS_EXAMPLE = "0:42,2:7"


def named(flag: str | None, text: str) -> str:
    """How a refusal starts: the flag (or argument) first, then the value as given."""
    return f"{flag} {text!r}" if flag else repr(text)


def parse_time(text: str, flag: str | None = None) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+hh:mm``); ``flag`` names it in the
    refusal: ``--since 'yesterday' is not an RFC 3339 time such as ...``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadArgument(
            f"{named(flag, text)} is not an RFC 3339 time such as {TIME_EXAMPLE}"
        ) from None
    if moment.tzinfo is None:
        raise BadArgument(f"{named(flag, text)} has no UTC offset (add Z or +hh:mm)")
    return moment


def parse_pairs(text: str, flag: str | None = None) -> dict[int, int]:
    """``"0:10,2:5"`` -> {0: 10, 2: 5}; ``flag`` names it in the refusal."""
    if not PAIRS.match(text):
        if all(POSITION.match(item) for item in text.split(",")):
            for item in text.split(","):
                parse_position(item, flag, whole=text)  # says which number is negative
        raise BadArgument(
            f"{named(flag, text)} is not a list of partition:offset pairs such as {PAIRS_EXAMPLE}"
        )
    pairs: dict[int, int] = {}
    for item in text.split(","):
        partition, offset = (int(part) for part in item.split(":"))
        if partition in pairs:
            raise BadArgument(f"{named(flag, text)} gives partition {partition} twice")
        pairs[partition] = offset
    return pairs


def parse_position(
    text: str, flag: str | None = None, *, whole: str | None = None
) -> tuple[int, int]:
    """One ``partition:offset``, each 0 or more (a leading '-' included: see
    ``accept_negative_values``); ``whole`` is the value to quote when ``text`` is a part."""
    given = named(flag, text if whole is None else whole)
    match = POSITION.match(text)
    if not match:
        raise BadArgument(f"{given} is not a partition:offset such as 0:42")
    partition, offset = int(match[1]), int(match[2])
    if partition < 0:
        raise BadArgument(f"{given} has partition {partition}: a partition is 0 or more")
    if offset < 0:
        raise BadArgument(f"{given} has offset {offset}: an offset is 0 or more")
    return partition, offset


def check_partitions(
    flag: str | None, text: str, wanted: Iterable[int], partitions: Iterable[int], topic: str
) -> None:
    """``BadArgument`` when ``wanted`` names a partition the topic does not have."""
    have = sorted(set(partitions))
    missing = sorted(set(wanted) - set(have))
    if missing:
        if not have:
            held = "no partition"
        elif len(have) == 1:
            held = f"partition {have[0]} only"
        else:
            held = f"partitions {have[0]} to {have[-1]}"
        raise BadArgument(
            f"{named(flag, text)}: topic {topic!r} has no partition {missing[0]} (it has {held})"
        )


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    """Let a value such as ``-1:0`` reach the tool's own check (a clear one-line refusal)
    instead of argparse, which takes anything starting with '-' for an option."""
    parser._negative_number_matcher = re.compile(r"^-\d+(:-?\d+(,\s*-?\d+:-?\d+)*)?$|^-\d*\.\d+$")


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
