"""Kafka clients built from the settings, with fallbacks for brokers that lack an API."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownError, UnsupportedVersionError
from aiokafka.helpers import create_ssl_context

from consumer.edges import metrics
from consumer.edges.deadletter import HEADERS_HEADROOM_BYTES
from consumer.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every Kafka client of the service: where, who, and how
    securely (TLS and SASL, from ``KAFKA_SECURITY_PROTOCOL`` and the ``KAFKA_SSL_*`` and
    ``KAFKA_SASL_*`` settings)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        assert settings.kafka_sasl_password is not None  # Settings validates the combination
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            # aiokafka takes the SCRAM credentials through its "plain" parameters too.
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return options


def _no_password() -> str:
    return ""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: verifies the brokers against ``KAFKA_SSL_CA_FILE`` (the system's
    CAs when unset), presents the client certificate if one is configured."""
    key_password = settings.kafka_ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_ca_file,
        certfile=settings.kafka_ssl_cert_file,
        keyfile=settings.kafka_ssl_key_file,
        # Without a password, an empty one: OpenSSL would otherwise prompt on the terminal.
        password=key_password.get_secret_value() if key_password is not None else _no_password,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def max_request_bytes(settings: Settings) -> int:
    """The producers' limit: a record of up to MAX_MESSAGE_BYTES plus its dlq.* headers."""
    return settings.max_message_bytes + HEADERS_HEADROOM_BYTES


async def start_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A started producer, idempotent where the broker supports it.

    Some Kafka-compatible brokers answer ``InitProducerId`` with an error; with
    ``KAFKA_ENABLE_IDEMPOTENCE=auto`` the producer then runs without idempotence
    (still ``acks=all``) and says so, instead of refusing to start.
    """
    common = {
        **client_options(settings),
        "acks": "all",
        "max_request_size": max_request_bytes(settings),
        **options,
    }
    if settings.kafka_enable_idempotence != "false":
        try:
            return await _started(AIOKafkaProducer(enable_idempotence=True, **common))
        except (UnknownError, UnsupportedVersionError):
            if settings.kafka_enable_idempotence == "true":
                raise
            _log_no_idempotence(settings)
    return await _started(AIOKafkaProducer(**common))


_LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")


def _log_no_idempotence(settings: Settings) -> None:
    """Says that the producer runs without idempotence. A warning for a real cluster; for
    a broker on this machine (the embedded one of ``make dev`` and the tests, which never
    grants InitProducerId) it is expected, and nobody can act on it: a DEBUG line."""
    hosts = [server.strip() for server in settings.kafka_bootstrap_servers.split(",")]
    if all(host.startswith(_LOOPBACK_HOSTS) for host in hosts if host):
        log.debug(
            "the local broker refused InitProducerId (the embedded dev broker does): "
            "producing without idempotence, still acks=all"
        )
        return
    log.warning(
        "the broker refused InitProducerId: producing without idempotence (still acks=all); "
        "KAFKA_ENABLE_IDEMPOTENCE=false stops asking, =true refuses to start instead"
    )


async def _started(producer: AIOKafkaProducer) -> AIOKafkaProducer:
    """``producer``, started; stopped again if it cannot start (the broker unreachable,
    the start refused), so that no half-open client is left behind."""
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the topics (name -> partitions) that do not exist yet."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                await admin.create_topics(missing)
    finally:
        await admin.close()


def pause(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
    """Fetch nothing more of ``partitions`` until resumed; the paused gauge follows."""
    consumer.pause(*partitions)
    metrics.PARTITIONS_PAUSED.set(len(consumer.paused()))


def resume(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
    """Fetch ``partitions`` again; the paused gauge follows."""
    consumer.resume(*partitions)
    metrics.PARTITIONS_PAUSED.set(len(consumer.paused()))
