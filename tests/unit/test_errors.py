"""Which failures are retried, and which Kafka answers refuse a dead letter, exception by
exception: a per-record refusal retried as transient stops its partition for ever."""

from __future__ import annotations

import aiokafka.errors as kafka
import asyncpg
import pytest

from consumer.edges.deadletter import REFUSALS, DeadLetterRefused
from consumer.edges.errors import DatabaseUnreachable, OffsetsMoved, is_transient

TRANSIENT = [
    asyncpg.exceptions.InvalidCachedStatementError(),
    # the broker out of reach, a leader or coordinator moving, timeouts
    kafka.KafkaConnectionError(),
    kafka.NodeNotReadyError(),
    kafka.NoBrokersAvailable(),
    kafka.KafkaTimeoutError(),
    kafka.RequestTimedOutError(),
    kafka.NotLeaderForPartitionError(),
    kafka.LeaderNotAvailableError(),
    kafka.NotEnoughReplicasError(),
    kafka.NotEnoughReplicasAfterAppendError(),
    kafka.CoordinatorNotAvailableError(),
    kafka.CoordinatorLoadInProgressError(),
    kafka.NotCoordinatorError(),
    kafka.UnknownTopicOrPartitionError(),
    kafka.KafkaStorageError(),
    kafka.BrokerNotAvailableError(),
    kafka.ReplicaNotAvailableError(),
    kafka.KafkaUnavailableError(),
    kafka.RebalanceInProgressError(),
    kafka.StaleMetadata(),
    kafka.OutOfOrderSequenceNumber(),  # the dead-letter queue renews its producer
    kafka.ProducerClosed(),  # a send caught on the old one as it closes
    # PostgreSQL out of reach or busy
    DatabaseUnreachable("CannotConnectNowError"),
    asyncpg.exceptions.ConnectionDoesNotExistError(),
    asyncpg.SerializationError(),
    asyncpg.DeadlockDetectedError(),
    ConnectionRefusedError(),
    TimeoutError(),
]

NOT_TRANSIENT = [
    # answers about one record: retrying it as it is gets the same answer
    kafka.MessageSizeTooLargeError(),
    kafka.RecordListTooLargeError(),
    kafka.RecordTooLargeError(),
    kafka.CorruptRecordException(),
    kafka.InvalidTimestampError(),
    kafka.PolicyViolationError(),
    kafka.UnknownError(),
    # misconfiguration: waiting does not fix it
    kafka.TopicAuthorizationFailedError(),
    kafka.GroupAuthorizationFailedError(),
    kafka.ClusterAuthorizationFailedError(),
    kafka.InvalidTopicError(),
    kafka.UnsupportedVersionError(),
    kafka.KafkaConfigurationError(),
    kafka.IllegalStateError(),
    DeadLetterRefused("refused bare"),
    OffsetsMoved([("t", 0)]),
    asyncpg.UniqueViolationError(),
    asyncpg.DataError(),
    ValueError(),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_failures_that_pass_by_themselves_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", NOT_TRANSIENT, ids=lambda e: type(e).__name__)
def test_refusals_and_misconfiguration_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        kafka.MessageSizeTooLargeError(),
        kafka.RecordListTooLargeError(),
        kafka.CorruptRecordException(),
        kafka.InvalidTimestampError(),
        kafka.PolicyViolationError(),
        kafka.UnknownError(),  # codes aiokafka does not name, such as INVALID_RECORD
    ],
    ids=lambda e: type(e).__name__,
)
def test_per_record_refusals_degrade_the_dead_letter(exc: BaseException) -> None:
    assert isinstance(exc, REFUSALS)


@pytest.mark.parametrize("exc", TRANSIENT[:13], ids=lambda e: type(e).__name__)
def test_an_unreachable_broker_does_not_degrade_a_dead_letter(exc: BaseException) -> None:
    """The batch is retried whole instead: dropping parts of it would lose them for nothing."""
    assert not isinstance(exc, REFUSALS)
