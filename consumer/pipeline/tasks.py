"""Tasks whose errors are never left for asyncio to report as "never retrieved".

The loop reaps its tasks and raises what they raised; but at shutdown, during an outage,
a write or a Kafka commit can fail after the loop stopped reaping, and asyncio would log
"Task exception was never retrieved" at ERROR when the task is collected: an operator
reads that as a crash. A task started here has its error retrieved as it ends (and
logged at DEBUG); whoever reaps it still gets it from ``result()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from consumer.edges.errors import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


def start_task(work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """``asyncio.create_task(work)``, its error retrieved when it ends."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_retrieve)
    return task


def retrieved(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """``future``, its error retrieved when it ends."""
    future.add_done_callback(_retrieve)
    return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    if (exc := future.exception()) is not None:
        name = future.get_name() if isinstance(future, asyncio.Task) else "future"
        log.debug("a task ended with an error", extra={"task": name, "error": type(exc).__name__})


def report_unretrieved(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's handler of errors nobody retrieved. One of them is no crash: asyncpg
    releases a pooled connection in a task of its own (shielded from the cancellation of
    the batch that held it), and when PostgreSQL stopped answering, that task ends in a
    timeout or a lost connection that nothing awaits. Said at INFO; anything else goes
    to asyncio's own handler, at ERROR."""
    future = context.get("future")
    exc = context.get("exception")
    coroutine = future.get_coro() if isinstance(future, asyncio.Task) else None
    if (
        exc is not None
        and getattr(coroutine, "__qualname__", "") == "PoolConnectionHolder.release"
        and is_transient(exc)
    ):
        log.info(
            "a PostgreSQL connection was dropped as it was released",
            extra={"error": type(exc).__name__},
        )
        return
    loop.default_exception_handler(context)
