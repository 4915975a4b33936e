"""Assemble and run the service: pool, migrations, HTTP, traces, consumer loop, signals,
shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from consumer.edges import metrics
from consumer.edges.errors import DatabaseMisconfigured, retrying
from consumer.edges.health import Health, keep_checking
from consumer.edges.http import HttpServer
from consumer.edges.logkeeping import keep_log
from consumer.edges.migrate import apply_migrations
from consumer.edges.store import Store
from consumer.edges.store_log import add_days_ahead
from consumer.edges.tracing import Tracing
from consumer.pipeline.batchspans import BatchSpans
from consumer.pipeline.parkkeeping import keep_parked
from consumer.pipeline.service import ConsumerService
from consumer.pipeline.tasks import report_unretrieved
from consumer.settings import Settings

log = logging.getLogger(__name__)


async def open_store(
    settings: Settings, stopping: asyncio.Event, migrate: bool, health: Health | None = None
) -> Store:
    """The pool, once PostgreSQL answers, with the migrations applied; closed again if
    this is interrupted (a signal while migrating). Waiting out an outage counts as
    coming round for ``health``."""

    def retried(operation: str, exc: BaseException) -> None:
        metrics.count_retry(operation, exc)
        if health is not None:
            health.beat()

    async for attempt in retrying(settings, "db_connect", stopping, retried):
        with attempt:
            store = await Store.open(settings)
    try:
        async for attempt in retrying(settings, "migrate", stopping, retried):
            with attempt:
                async with store.pool.acquire() as conn:
                    if migrate:
                        await apply_migrations(conn)
                    else:  # the schema is current; the log's coming days may be missing
                        await add_days_ahead(conn)
    except BaseException:
        await store.close(1.0)
        raise
    return store


async def start_up(
    settings: Settings,
    stopping: asyncio.Event,
    migrate: bool,
    health: Health,
    http: HttpServer,
    spans: BatchSpans | None,
) -> tuple[Store, ConsumerService]:
    """PostgreSQL, the migrations, then Kafka, each waited for while unreachable. What
    was opened is closed again if this is interrupted, so that a signal at any stage of
    the start can end it (``run_service`` cancels it)."""
    store = await open_store(settings, stopping, migrate, health)
    try:
        health.db_up(True)
        http.store = store
        service = await ConsumerService.start(settings, store, health, spans)
    except BaseException:
        await store.close(1.0)
        raise
    return store, service


def stop_on_signals(stopping: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stopping``."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)


async def run_service(
    settings: Settings, *, migrate: bool = True, stopping: asyncio.Event | None = None
) -> int:
    """Run until ``stopping`` is set (by default: SIGTERM or SIGINT); finish the batch in
    hand; return the exit code."""
    if stopping is None:
        stopping = asyncio.Event()
        stop_on_signals(stopping)
    asyncio.get_running_loop().set_exception_handler(report_unretrieved)

    metrics.export_known_series(settings.kafka_topic)
    metrics.export_build_info()
    if settings.log_retention is not None:
        metrics.LOG_RETENTION.set(settings.log_retention.total_seconds())
    try:
        tracing = Tracing() if settings.tracing_enabled else None
    except ValueError as exc:  # the SDK refuses a span limit that is not a number
        log.error("traces cannot start: %s", exc)
        return 2
    health = Health(wedged_after_seconds=settings.health_wedged_after_seconds)
    http = HttpServer(health, settings.http_host, settings.http_port)
    await http.start()
    store = service = None
    deadline: float | None = None
    try:
        starting = asyncio.create_task(
            start_up(settings, stopping, migrate, health, http, batch_spans(settings, tracing))
        )
        stop_requested = asyncio.create_task(stopping.wait())
        await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # A signal before the service is up (PostgreSQL or Kafka away, a migration
            # waiting on a lock): stop starting, within the shutdown budget.
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(starting, settings.shutdown_timeout_seconds)
            log.info("stopped while starting")
            return 0
        store, service = starting.result()
        http.status = service.status
        log.info(
            "consuming",
            extra={
                "topic": settings.kafka_topic,
                "group": settings.kafka_group_id,
                "http_port": http.port,
            },
        )
        running = asyncio.create_task(service.run())
        watching = [
            asyncio.create_task(
                keep_checking("the broker", service.consumer.topics, health.kafka_up)
            ),
            asyncio.create_task(keep_checking("PostgreSQL", store.ping, health.db_up)),
            asyncio.create_task(keep_log(store, settings)),
            asyncio.create_task(keep_parked(store, service.dead_letters, settings)),
        ]
        await asyncio.wait({running, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        # From here on, everything (the batch in hand, the clients, the pool) shares one
        # budget: SHUTDOWN_TIMEOUT_SECONDS.
        deadline = time.monotonic() + settings.shutdown_timeout_seconds
        service.stop()
        stop_requested.cancel()
        for watcher in watching:
            watcher.cancel()
        try:
            await asyncio.wait_for(running, settings.shutdown_timeout_seconds)
        except TimeoutError:
            log.error(
                "the batch in hand did not finish in time; it will be redone by the next owner"
            )
        log.info("stopping")
        return 0
    except DatabaseMisconfigured as exc:
        # Not an outage: waiting would not fix it. One line that names the mistake.
        log.error("PostgreSQL refused the connection: %s (check DATABASE_URL)", exc)
        return 2
    except Exception:
        if stopping.is_set():
            return 0  # asked to stop while still connecting
        log.exception("the consumer stopped on an unexpected error")
        return 1
    finally:
        if deadline is None:
            deadline = time.monotonic() + settings.shutdown_timeout_seconds
        if service is not None:
            await service.close(max(0.1, (deadline - time.monotonic()) * 0.7))
        if store is not None:
            await store.close(max(0.1, deadline - time.monotonic()))
        await http.stop()
        if tracing is not None:
            # The last spans, those of the batches just finished, go out now: given what
            # is left of the budget, and at least a second.
            tracing.shutdown(max(1.0, deadline - time.monotonic()))


def batch_spans(settings: Settings, tracing: Tracing | None) -> BatchSpans | None:
    """The loop's spans, when traces are exported."""
    if tracing is None:
        return None
    return BatchSpans(
        tracing.tracer, settings.kafka_topic, settings.kafka_group_id, tracing.max_links
    )
