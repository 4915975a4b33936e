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

from aiokafka.errors import KafkaError

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
    """The loop's handler of errors nobody retrieved. Two of them are no crash, each a
    library's task shielded from the cancellation of what awaited it, that ends in an
    error nothing awaits any more:

    - asyncpg releases a pooled connection in a task of its own (shielded from the
      cancellation of the batch that held it): when PostgreSQL stopped answering, it ends
      in a timeout or a lost connection;
    - aiokafka sends an offset commit in a task of its own (shielded from the
      cancellation of ``commit``): when the Kafka commit timed out here (the broker not
      answering; the offsets in PostgreSQL are what count, and the commit is tried
      again), it may still end in a Kafka error.

    Said at INFO; anything else goes to asyncio's own handler, at ERROR."""
    future = context.get("future")
    exc = context.get("exception")
    coroutine = future.get_coro() if isinstance(future, asyncio.Task) else None
    what = getattr(coroutine, "__qualname__", "")
    if exc is not None:
        if what == "PoolConnectionHolder.release" and is_transient(exc):
            log.info(
                "a PostgreSQL connection was dropped as it was released",
                extra={"error": type(exc).__name__},
            )
            return
        if what == "GroupCoordinator._do_commit_offsets" and isinstance(exc, KafkaError):
            log.info(
                "a Kafka offset commit given up on failed later",
                extra={"error": type(exc).__name__},
            )
            return
    loop.default_exception_handler(context)
