"""What /healthz and /readyz report: is the loop making progress, can it do its job."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from consumer import metrics


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
