"""/metrics, /healthz and /readyz on a bare asyncio server: no web framework needed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from consumer.edges import metrics
from consumer.edges.health import Health
from consumer.edges.store import Store

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HttpServer:
    """Serves the operational endpoints beside the consumer loop, on the same event loop."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.health = health
        self.host = host
        self.port = port
        self.store: Store | None = None
        # The running member's status (``GET /status``), once the loop has started.
        self.status: Callable[[], dict[str, Any]] | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, content_type, body = await self._route(method, path.split("?", 1)[0])
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that does not speak HTTP gets the connection closed
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            self._update_pool_gauges()
            return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        if path == "/healthz":
            if self.health.is_alive():
                return 200, "application/json", b'{"status":"ok"}\n'
            return 503, "application/json", b'{"status":"wedged"}\n'
        if path == "/readyz":
            await self._check_database()
            reason = self.health.not_ready_reason()
            if reason is None:
                return 200, "application/json", b'{"status":"ready"}\n'
            body = json.dumps({"status": "not ready", "reason": reason}).encode() + b"\n"
            return 503, "application/json", body
        if path == "/status":
            await self._check_database()
            up = "up" if self.health.is_db_up else "down"
            status = self.status() if self.status else {"status": "starting", "postgresql": up}
            return 200, "application/json", json.dumps(status, indent=2).encode() + b"\n"
        return 404, "text/plain", b"not found\n"

    async def _check_database(self) -> None:
        if self.store is None:
            return
        try:
            # A timeout in this task, not wait_for's task around the ping: a shutdown that
            # cancels this handler as that task fails left its error never retrieved.
            async with asyncio.timeout(2):
                await self.store.ping()
            self.health.db_up(True)
        except Exception as exc:  # any failure to answer means not ready, whatever it is
            log.debug("readiness ping failed", extra={"error": type(exc).__name__})
            self.health.db_up(False)

    def _update_pool_gauges(self) -> None:
        if self.store is None:
            return
        pool = self.store.pool
        idle = pool.get_idle_size()
        metrics.DB_POOL_CONNECTIONS.labels("in_use").set(pool.get_size() - idle)
        metrics.DB_POOL_CONNECTIONS.labels("idle").set(idle)
