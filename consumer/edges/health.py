"""What /healthz and /readyz report: is the loop making progress, can it do its job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from consumer.edges import metrics

log = logging.getLogger(__name__)


@dataclass
class Health:
    """Liveness and readiness facts, updated by the loop, read by the HTTP endpoints."""

    wedged_after_seconds: float = 60.0
    _last_beat: float = field(default_factory=time.monotonic)
    _joined: bool = False
    _db_up: bool = False
    _kafka_up: bool = False

    def beat(self) -> None:
        """The loop came round: it fetched (records or nothing) without hanging."""
        self._last_beat = time.monotonic()

    def joined(self, value: bool) -> None:
        self._joined = value

    def db_up(self, value: bool) -> None:
        self._db_up = value
        metrics.DB_UP.set(int(value))

    def kafka_up(self, value: bool) -> None:
        self._kafka_up = value
        metrics.KAFKA_UP.set(int(value))

    @property
    def is_db_up(self) -> bool:
        return self._db_up

    @property
    def is_kafka_up(self) -> bool:
        return self._kafka_up

    def is_alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.wedged_after_seconds

    def not_ready_reason(self) -> str | None:
        """Why the consumer cannot do its job now, or None when it can."""
        if not self._db_up:
            return "postgresql is not answering"
        if not self._kafka_up:
            return "kafka is not answering"
        if not self._joined:
            return "not yet a member of the consumer group"
        return None


async def keep_checking(
    what: str,
    probe: Callable[[], Awaitable[object]],
    report: Callable[[bool], None],
    every_seconds: float = 5.0,
) -> None:
    """Ask ``probe`` every ``every_seconds`` (its timeout too) and ``report`` whether it
    answered, idle or busy, so that the ``*_up`` gauges and readiness stay true to the
    server. Runs until cancelled."""
    was_up = True
    while True:
        try:
            async with asyncio.timeout(every_seconds):  # no task of its own to orphan
                await probe()
            is_up = True
        except Exception as exc:  # any failure to answer is down, whatever it is
            is_up = False
            if was_up:
                log.warning(f"{what} is not answering", extra={"error": type(exc).__name__})
        report(is_up)
        was_up = is_up
        await asyncio.sleep(every_seconds)
