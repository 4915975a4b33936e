"""Security settings: validation, *_FILE secrets, SECRETS_DIR, and the Kafka client options."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from consumer.app import run_service
from consumer.edges.errors import is_transient
from consumer.edges.kafka import client_options
from consumer.settings import FILE_SECRETS, Settings, load_settings

SECRET = "S3cret-Passw0rd"
DB_URL = f"postgresql://app:{SECRET}@db.internal:5432/users"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment with none of the service's variables set."""
    names = [name.upper() for name in Settings.model_fields]
    names += [f"{name.upper()}_FILE" for name in FILE_SECRETS]
    for name in [*names, "SECRETS_DIR"]:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate with its key in clear and encrypted ("keypass")."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    client = ca.issue_cert("client.example")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client.key"))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    (root / "client-encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"keypass"),
        )
    )
    (root / "not-pem.txt").write_text("hello\n")
    return {
        p.name.split(".")[0].replace("-", "_") + p.suffix.replace(".", "_"): p
        for p in root.iterdir()
    }


def refused(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line load_settings prints when it exits 2."""
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- Kafka client options ------------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing(env: pytest.MonkeyPatch) -> None:
    options = client_options(Settings())
    assert options == {
        "bootstrap_servers": "localhost:9092",
        "client_id": "user-events-consumer",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_with_scram_sha_512_gives_aiokafka_these_options(
    env: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("KAFKA_SASL_USERNAME", "consumer")
    env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    env.setenv("KAFKA_SSL_CA_FILE", str(pki["ca_pem"]))
    options = client_options(load_settings())
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "localhost:9092",
        "client_id": "user-events-consumer",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "consumer",
        "sasl_plain_password": SECRET,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    # The configured CA, not the system's: only ours is loaded.
    assert [c["subject"] for c in context.get_ca_certs()] == [
        c["subject"] for c in _ca_certs(pki["ca_pem"])
    ]


def _ca_certs(path: Path) -> list[Any]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=path)
    return list(context.get_ca_certs())


def test_sasl_plaintext_with_plain_has_no_tls(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    env.setenv("KAFKA_SASL_USERNAME", "consumer")
    env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    options = client_options(load_settings())
    assert "ssl_context" not in options
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "PLAIN"


def test_ssl_with_a_client_certificate_and_an_encrypted_key_from_a_password_file(
    env: pytest.MonkeyPatch, pki: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "keypass").write_text("keypass\n")
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    env.setenv("KAFKA_SSL_CERT_FILE", str(pki["client_pem"]))
    env.setenv("KAFKA_SSL_KEY_FILE", str(pki["client_encrypted_key"]))
    env.setenv("KAFKA_SSL_KEY_PASSWORD_FILE", str(tmp_path / "keypass"))
    env.setenv("KAFKA_SSL_CHECK_HOSTNAME", "false")
    settings = load_settings()
    assert settings.kafka_ssl_key_password is not None
    assert settings.kafka_ssl_key_password.get_secret_value() == "keypass"
    options = client_options(settings)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert options["ssl_context"].check_hostname is False
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # still verifies the CA


# --- refused configurations: one line naming the variable, exit 2 -----------------------


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "KAFKA_SASL_MECHANISM",
            "required",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
            "KAFKA_SASL_USERNAME",
            "required",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "PLAIN",
                "KAFKA_SASL_USERNAME": "u",
            },
            "KAFKA_SASL_PASSWORD",
            "required",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
            "SCRAM-SHA-512",
        ),
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME", "does not use SASL"),
        ({"KAFKA_SSL_CA_FILE": "{ca_pem}"}, "KAFKA_SSL_CA_FILE", "does not use TLS"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{client_pem}"},
            "KAFKA_SSL_KEY_FILE",
            "required with KAFKA_SSL_CERT_FILE",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_FILE": "{client_key}"},
            "KAFKA_SSL_CERT_FILE",
            "required with KAFKA_SSL_KEY_FILE",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_PASSWORD": SECRET},
            "KAFKA_SSL_KEY_FILE",
            "required with KAFKA_SSL_KEY_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CA_FILE",
            "file",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{not_pem_txt}"},
            "KAFKA_SSL_CA_FILE",
            "not a PEM",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERT_FILE": "{client_pem}",
                "KAFKA_SSL_KEY_FILE": "{client_encrypted_key}",
                "KAFKA_SSL_KEY_PASSWORD": SECRET,  # the wrong one
            },
            "KAFKA_SSL_KEY_FILE",
            "KAFKA_SSL_KEY_PASSWORD",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERT_FILE": "{client_pem}",
                "KAFKA_SSL_KEY_FILE": "{client_encrypted_key}",  # no password: no prompt
            },
            "KAFKA_SSL_KEY_FILE",
            "cannot load",
        ),
        (
            {"DATABASE_URL": DB_URL, "DATABASE_URL_FILE": "{ca_pem}"},
            "DATABASE_URL_FILE",
            "not both",
        ),
        (
            {"KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"},
            "KAFKA_SASL_PASSWORD_FILE",
            "cannot read /nonexistent/password",
        ),
        ({"SECRETS_DIR": "/nonexistent/secrets"}, "SECRETS_DIR", "not a directory"),
    ],
)
def test_a_bad_security_configuration_exits_2_naming_the_variable(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pki: dict[str, Path],
    variables: dict[str, str],
    named: str,
    says: str,
) -> None:
    for name, value in variables.items():
        env.setenv(name, value.format(**{k: str(v) for k, v in pki.items()}))
    line = refused(capsys)
    assert line.startswith(f"user-events-consumer: invalid {named}: "), line
    assert says in line, line
    assert SECRET not in line


def test_an_empty_secret_file_is_refused(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "empty").write_text("\n")
    env.setenv("DATABASE_URL_FILE", str(tmp_path / "empty"))
    assert "invalid DATABASE_URL_FILE: " in refused(capsys)


# --- secrets from files ------------------------------------------------------------


def test_file_secrets_are_read_without_their_trailing_newline(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "db").write_text(DB_URL + "\n")
    (tmp_path / "sasl").write_text(SECRET + "\r\n")
    env.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("KAFKA_SASL_USERNAME", "consumer")
    env.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "sasl"))
    settings = load_settings()
    assert settings.database_url.get_secret_value() == DB_URL
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET


def test_secrets_dir_holds_one_file_per_setting_and_variables_win(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "database_url").write_text(DB_URL + "\n")
    (tmp_path / "kafka_group_id").write_text("from-the-secrets-dir\n")
    env.setenv("SECRETS_DIR", str(tmp_path))
    env.setenv("KAFKA_GROUP_ID", "from-the-environment")
    settings = load_settings()
    assert settings.database_url.get_secret_value() == DB_URL
    assert settings.kafka_group_id == "from-the-environment"


def test_settings_never_show_their_secrets(env: pytest.MonkeyPatch, pki: dict[str, Path]) -> None:
    settings = Settings(
        database_url=DB_URL,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="consumer",
        kafka_sasl_password=SECRET,
        kafka_ssl_cert_file=pki["client_pem"],
        kafka_ssl_key_file=pki["client_encrypted_key"],
        kafka_ssl_key_password="keypass",
    )
    for shown in (repr(settings), str(settings), settings.model_dump_json(), f"{settings!r}"):
        assert SECRET not in shown
        assert "keypass" not in shown
        assert "**********" in shown


# --- what is worth retrying ------------------------------------------------------


def test_an_unverifiable_certificate_is_not_transient_but_a_refused_connection_is() -> None:
    assert not is_transient(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(ssl.SSLEOFError())  # a connection cut during the handshake


# --- traces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "enabled"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "consumer", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "OTLP", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
    ],
)
def test_traces_are_off_unless_an_otlp_endpoint_or_exporter_is_named(
    env: pytest.MonkeyPatch, variables: dict[str, str], enabled: bool
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    assert Settings().tracing_enabled is enabled


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", "only otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER", "console"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/protobuf",
        ),
    ],
)
def test_an_exporter_or_protocol_that_is_not_installed_exits_2_naming_the_variable(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    named: str,
    says: str,
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    line = refused(capsys)
    assert line.startswith(f"user-events-consumer: invalid {named}: "), line
    assert says in line, line


def test_a_span_limit_the_sdk_refuses_stops_the_service_at_start_with_exit_2(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    env.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "lots")
    env.setenv("HTTP_PORT", "0")
    assert asyncio.run(run_service(Settings(), stopping=asyncio.Event())) == 2
    assert "OTEL_SPAN_LINK_COUNT_LIMIT" in caplog.text


# --- the event log's retention -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("", None), ("off", None)],
)
def test_log_retention_reads_a_duration_and_blank_or_off_keeps_everything(
    env: pytest.MonkeyPatch, value: str, expected: timedelta | None
) -> None:
    env.setenv("LOG_RETENTION", value)
    assert load_settings().log_retention == expected


@pytest.mark.parametrize(("value", "says"), [("30", "not a duration"), ("0d", "longer than 0")])
def test_a_bad_log_retention_exits_2_naming_the_variable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    env.setenv("LOG_RETENTION", value)
    line = refused(capsys)
    assert line.startswith("user-events-consumer: invalid LOG_RETENTION: "), line
    assert says in line, line
