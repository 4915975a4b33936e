"""Which failures are transient (retry, never dead-letter) and the retry policies for them.

Decided from exception types (asyncpg's SQLSTATE classes, aiokafka's error classes),
never from message text. Poison records are not exceptions here: they are
``Rejection`` values handed to the dead-letter stage.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    RebalanceInProgressError,
    ReplicaNotAvailableError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_when_event_set,
    wait_exponential_jitter,
)

from consumer.settings import Settings

log = logging.getLogger(__name__)

_TRANSIENT_DB = (
    asyncpg.PostgresConnectionError,  # class 08: connection failures
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, out of memory
    asyncpg.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # A pooled connection whose backend was terminated mid-protocol, handed out before
    # asyncpg noticed it was lost; the pool drops it on release.
    asyncpg.InternalClientError,
    # A statement asyncpg prepared before a migration changed the types it returns (a
    # replica still running while a newer release migrates): asyncpg drops it from its
    # cache as it raises, and retries it itself only outside a transaction. The batch's
    # retry prepares it again.
    asyncpg.exceptions.InvalidCachedStatementError,
)


# Kafka failures that pass by themselves although aiokafka does not flag them
# ``retriable``: timeouts, a broker or replica away, a group rebalancing. Every other
# Kafka error aiokafka does not flag is an answer about a request itself (a refused
# record, a denied authorisation, a bad configuration): retrying it would loop forever.
_TRANSIENT_KAFKA = (
    KafkaTimeoutError,
    KafkaUnavailableError,
    BrokerNotAvailableError,
    ReplicaNotAvailableError,
    RebalanceInProgressError,
    # The dead-letter queue renews its producer when it meets the first (see
    # DeadLetterQueue._renew_producer), and a send caught on the old producer as it
    # closes meets the second: the batch's next attempt goes through the new one.
    OutOfOrderSequenceNumber,
    ProducerClosed,
)


class DatabaseUnreachable(ConnectionError):
    """Opening a connection to PostgreSQL failed, whatever the server answered (not
    accepting connections, too many, shutting down, ...): always transient."""


class DatabaseMisconfigured(Exception):
    """PostgreSQL refused the connection for a reason that waiting does not fix: a
    database that does not exist (SQLSTATE 3D000), a role or password refused (class
    28). Its message is the server's, which names the mistake (``database "usres" does
    not exist``) and holds no secret."""


# Told by SQLSTATE, through asyncpg's classes, never by the message.
MISCONFIGURED_DB = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


class OffsetsMoved(Exception):
    """The offsets stored for a batch's partitions are no longer where the batch starts:
    another member (or an earlier attempt of this one, whose COMMIT did land) has
    written past them. The batch's transaction is rolled back; not transient, not poison."""

    def __init__(self, partitions: list[tuple[str, int]]) -> None:
        super().__init__(f"stored offsets moved for {len(partitions)} partition(s)")
        self.partitions = partitions


def is_transient(exc: BaseException) -> bool:
    """True for failures that go away by themselves: retry, do not commit, do not dead-letter."""
    if isinstance(exc, _TRANSIENT_DB):
        return True
    if isinstance(exc, KafkaError):
        # Not reachable, a leader moving, a coordinator loading, a timeout: aiokafka's
        # own ``retriable`` flag, plus the few it leaves out.
        return bool(exc.retriable) or isinstance(exc, _TRANSIENT_KAFKA)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # An untrusted certificate or a wrong host name is a misconfiguration, not an
        # outage: waiting does not fix it, so fail (and say so) instead of retrying forever.
        return False
    # Connection refused / reset, DNS, timeouts waiting for the pool or the network.
    return isinstance(exc, OSError | asyncio.TimeoutError)


def retrying(
    settings: Settings,
    operation: str,
    stop_event: asyncio.Event,
    on_retry: Callable[[str, BaseException], None] | None = None,
) -> AsyncRetrying:
    """Retry transient failures of ``operation`` with capped, jittered exponential backoff,
    until they succeed or the service is stopping."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None
        log.warning(
            "transient failure, retrying",
            extra={
                "operation": operation,
                "error": type(exc).__name__,
                "attempt": state.attempt_number,
                "sleep_seconds": round(state.upcoming_sleep, 3),
            },
        )
        if on_retry is not None:
            on_retry(operation, exc)

    kwargs: dict[str, Any] = {
        "retry": retry_if_exception(is_transient),
        "wait": wait_exponential_jitter(
            multiplier=settings.retry_initial_seconds, max=settings.retry_max_seconds
        ),
        "stop": stop_when_event_set(stop_event),  # type: ignore[arg-type]
        "before_sleep": before_sleep,
        "reraise": True,
    }
    return AsyncRetrying(**kwargs)
