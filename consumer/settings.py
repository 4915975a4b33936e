"""Every knob of the service: its environment name, default and bounds, in one place."""

from __future__ import annotations

import os
import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from consumer.core.durations import parse_duration

# Secrets that may also be read from a file named by ``<VARIABLE>_FILE``.
FILE_SECRETS = ("database_url", "kafka_sasl_password", "kafka_ssl_key_password")
_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


class ConfigurationError(ValueError):
    """A configuration that cannot be read (a ``*_FILE`` or ``SECRETS_DIR`` problem)."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class SecretFilesSource(PydanticBaseSettingsSource):
    """``DATABASE_URL_FILE=/run/secrets/db`` sets ``DATABASE_URL`` to that file's content
    (without its trailing newline); setting both is an error."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        environ = {name.upper(): value for name, value in os.environ.items()}
        values: dict[str, Any] = {}
        for field in FILE_SECRETS:
            variable = field.upper()
            path = environ.get(f"{variable}_FILE")
            if not path:
                continue
            if environ.get(variable):
                raise ConfigurationError(
                    f"{variable}_FILE", f"set either {variable} or {variable}_FILE, not both"
                )
            try:
                text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise ConfigurationError(
                    f"{variable}_FILE", f"cannot read {path}: {reason}"
                ) from None
            if not text:
                raise ConfigurationError(f"{variable}_FILE", f"{path} is empty")
            values[field] = text
        return values


def _invalid(variable: str, message: str) -> PydanticCustomError:
    """A validation error that names the variable to fix (``load_settings`` prints it)."""
    return PydanticCustomError(
        "configuration", "{message}", {"variable": variable, "message": message}
    )


class Settings(BaseSettings):
    """Configuration read from the environment (and nothing else reads the environment)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments, ``*_FILE`` variables, variables, files in ``SECRETS_DIR``
        (one file per setting, named like the variable, as Docker and Kubernetes mount
        secrets), defaults."""
        sources = [init_settings, SecretFilesSource(settings_cls), env_settings]
        secrets_dir = os.environ.get("SECRETS_DIR")
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                raise ConfigurationError("SECRETS_DIR", f"{secrets_dir} is not a directory")
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)

    kafka_bootstrap_servers: str = Field("localhost:9092", min_length=1)
    kafka_topic: str = Field("user-events", min_length=1)
    kafka_dlq_topic: str = Field("user-events.dlq", min_length=1)
    kafka_group_id: str = Field("user-events-consumer", min_length=1)
    kafka_client_id: str = "user-events-consumer"
    kafka_enable_idempotence: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Idempotent dead-letter producer; 'auto' falls back when the broker lacks it.",
    )
    kafka_max_poll_records: int = Field(5000, ge=1, le=100_000)
    kafka_fetch_timeout_ms: int = Field(500, ge=1, le=60_000)
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=60_000,
        description="How long the broker may hold a fetch for more data. Kafka answers as "
        "soon as data is there; some compatible brokers hold it this long regardless, "
        "which becomes latency.",
    )
    kafka_max_partition_fetch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    kafka_fetch_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_max_poll_interval_ms: int = Field(300_000, ge=1000)

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = Field(None, min_length=1)
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: FilePath | None = Field(
        None, description="CA bundle to verify the brokers; the system's CAs when unset."
    )
    kafka_ssl_cert_file: FilePath | None = Field(None, description="Client certificate (PEM).")
    kafka_ssl_key_file: FilePath | None = Field(None, description="Client private key (PEM).")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True

    database_url: SecretStr = SecretStr("postgresql://postgres@localhost:5432/postgres")
    db_pool_min_size: int = Field(1, ge=0, le=100)
    db_pool_max_size: int = Field(4, ge=1, le=100)
    # Batches of different partitions written at once, each in its own transaction on
    # its own pooled connection (keep DB_POOL_MAX_SIZE above it, for positioning).
    db_concurrent_batches: int = Field(2, ge=1, le=16)
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_command_timeout_seconds: float = Field(30.0, gt=0)
    db_pool_acquire_timeout_seconds: float = Field(10.0, gt=0)

    max_message_bytes: int = Field(1024 * 1024, ge=64, description="Larger records are poison.")
    retry_initial_seconds: float = Field(0.1, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    shutdown_timeout_seconds: float = Field(10.0, gt=0)
    health_wedged_after_seconds: float = Field(
        60.0,
        gt=0,
        description="/healthz answers 503 once the loop has not come round for this long; "
        "waiting out an outage counts as coming round.",
    )

    failpoint_kill_after_db_commit: int = Field(
        0,
        ge=0,
        description="Testing only: SIGKILL the process right after the Nth batch's database "
        "commit, before its Kafka commit, to prove that a crash there loses and repeats nothing.",
    )

    # The dead-letter storm guard, off unless configured: a partition whose records are
    # dead-lettered this many in a row, or at this ratio over the last DLQ_WINDOW records,
    # is held at the record that crossed the limit (see docs/operations.md).
    dlq_max_consecutive: int = Field(
        0,
        ge=0,
        description="Dead letters in a row on one partition that trip the guard (0: off).",
    )
    dlq_max_ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of dead letters over the last DLQ_WINDOW records of one partition "
        "that trips the guard (0: off).",
    )
    dlq_window: int = Field(
        1000, ge=1, description="Records of one partition that DLQ_MAX_RATIO looks back over."
    )

    offset_past_end: Literal["hold", "earliest", "latest"] = Field(
        "hold",
        description="What to do with a partition whose stored offset lies past the end of "
        "its log (a topic younger than the offsets): hold it, paused and reported (nothing "
        "is lost silently); or reset it to the log's beginning or end, recorded in "
        "offset_resets.",
    )

    # The event log's retention (docs/privacy.md): off keeps every row for ever.
    log_retention: timedelta | None = Field(
        None,
        description="Drop the log's days recorded wholly before now minus this (30d, 12h).",
    )
    log_maintenance_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the service adds the log's coming days, prunes it (when "
        "LOG_RETENTION is set) and reads its oldest row and erasure counts for /metrics.",
    )

    # Parking (docs/parking.md): an update whose user was never created, or an event whose
    # email another active user holds, waits in PostgreSQL for what it lacks.
    park_ttl: timedelta = Field(
        timedelta(hours=24),
        description="How long a parked event waits for its user's create or its email to "
        "be freed before it is dead-lettered (24h, 90m); 0: no parking, dead-letter at once.",
    )
    park_max_per_user: int = Field(
        100, ge=1, description="Most events parked for one user; past it, dead-letter at once."
    )
    park_max_rows: int = Field(
        100_000, ge=1, description="Most events parked in all; past it, dead-letter at once."
    )
    park_sweep_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the service expires parked events past PARK_TTL, heals those "
        "whose wait is over, and reads the parked count for /metrics.",
    )

    # Traces, off unless one of these standard OpenTelemetry variables asks for them. The
    # SDK reads every other OTEL_* variable itself: OTEL_SERVICE_NAME,
    # OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER,
    # OTEL_SPAN_LINK_COUNT_LIMIT, OTEL_BSP_* ... (see docs/operations.md).
    otel_sdk_disabled: bool = Field(False, description="true: no telemetry, whatever else is set.")
    otel_traces_exporter: str | None = Field(
        None,
        description="otlp: traces on (to localhost:4318 unless an endpoint is set); none: off.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="Base URL of the OTLP/HTTP receiver (/v1/traces added); traces on."
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None, description="Full URL the spans are sent to; turns traces on."
    )
    # Only OTLP over HTTP with protobuf is installed: a collector expecting gRPC would get
    # nothing, so another protocol is a startup error, not a silent loss.
    otel_exporter_otlp_protocol: Literal["http/protobuf"] | None = None
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] | None = None

    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "console", "json"] = Field(
        "auto",
        description="console: one readable line per event; json: one JSON object per line; "
        "auto: console when stderr is a terminal, else json.",
    )

    @field_validator("log_retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip() or value.strip().lower() == "off":
                return None
            try:
                duration = parse_duration(value)
            except ValueError as exc:
                raise _invalid("LOG_RETENTION", str(exc)) from None
            if not duration:
                raise _invalid("LOG_RETENTION", "must be longer than 0 (leave it unset: off)")
            return duration
        return value

    @field_validator("park_ttl", mode="before")
    @classmethod
    def _park_ttl(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip() == "0":
                return timedelta(0)
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise _invalid("PARK_TTL", str(exc)) from None
        return value

    @property
    def parking(self) -> bool:
        """Whether events that wait for something are parked (PARK_TTL above 0)."""
        return self.park_ttl > timedelta(0)

    @field_validator(
        "otel_traces_exporter",
        "otel_exporter_otlp_endpoint",
        "otel_exporter_otlp_traces_endpoint",
        "otel_exporter_otlp_protocol",
        "otel_exporter_otlp_traces_protocol",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """OpenTelemetry's rule: a variable set to the empty string is as if unset. Names
        (an exporter, a protocol) match in any case; a URL is kept as it is."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        return value if info.field_name and info.field_name.endswith("endpoint") else value.lower()

    @field_validator("otel_sdk_disabled", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if isinstance(value, str) and not value.strip() else value

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str | None) -> str | None:
        if value is None:
            return None
        unknown = {name.strip() for name in value.split(",")} - {"otlp", "none"}
        if unknown:
            raise _invalid(
                "OTEL_TRACES_EXPORTER",
                f"{', '.join(sorted(unknown))} is not installed: only otlp (OTLP/HTTP) or none",
            )
        return value

    @property
    def tracing_enabled(self) -> bool:
        """Whether spans are exported: OTEL_TRACES_EXPORTER names otlp, or, when it is unset,
        an OTLP endpoint is set; never with OTEL_SDK_DISABLED=true. Off by default, unlike an
        SDK configured by itself: a consumer that exported to localhost:4318 unasked would
        pay for spans nobody reads."""
        if self.otel_sdk_disabled:
            return False
        if self.otel_traces_exporter is not None:
            return "otlp" in {name.strip() for name in self.otel_traces_exporter.split(",")}
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        """Settings that the chosen protocol would ignore are errors, not silent surprises."""
        protocol = self.kafka_security_protocol
        where = f"KAFKA_SECURITY_PROTOCOL is {protocol}"
        if protocol in _SASL_PROTOCOLS:
            if self.kafka_sasl_mechanism is None:
                raise _invalid("KAFKA_SASL_MECHANISM", f"required when {where}")
            if not self.kafka_sasl_username:
                raise _invalid("KAFKA_SASL_USERNAME", f"required when {where}")
            if self.kafka_sasl_password is None or not self.kafka_sasl_password.get_secret_value():
                raise _invalid("KAFKA_SASL_PASSWORD", f"required when {where}")
        else:
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
                if getattr(self, name) is not None:
                    raise _invalid(name.upper(), f"set, but {where}, which does not use SASL")
        if protocol not in _TLS_PROTOCOLS:
            for name in (
                "kafka_ssl_ca_file",
                "kafka_ssl_cert_file",
                "kafka_ssl_key_file",
                "kafka_ssl_key_password",
            ):
                if getattr(self, name) is not None:
                    raise _invalid(name.upper(), f"set, but {where}, which does not use TLS")
        if self.kafka_ssl_cert_file is not None and self.kafka_ssl_key_file is None:
            raise _invalid("KAFKA_SSL_KEY_FILE", "required with KAFKA_SSL_CERT_FILE")
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise _invalid("KAFKA_SSL_CERT_FILE", "required with KAFKA_SSL_KEY_FILE")
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            raise _invalid("KAFKA_SSL_KEY_FILE", "required with KAFKA_SSL_KEY_PASSWORD")
        if protocol in _TLS_PROTOCOLS:
            self._check_tls_files()
        return self

    def _check_tls_files(self) -> None:
        """Load the CA, certificate and key now, so that a wrong file or key password is a
        startup error naming the variable rather than a connection failure retried forever."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.kafka_ssl_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.kafka_ssl_ca_file)
            except ssl.SSLError:
                raise _invalid("KAFKA_SSL_CA_FILE", "not a PEM certificate bundle") from None
        if self.kafka_ssl_cert_file is not None:
            password = self.kafka_ssl_key_password
            try:
                context.load_cert_chain(
                    self.kafka_ssl_cert_file,
                    self.kafka_ssl_key_file,
                    password.get_secret_value() if password is not None else lambda: "",
                )
            except ssl.SSLError:
                raise _invalid(
                    "KAFKA_SSL_KEY_FILE",
                    "cannot load the client certificate with this key: not PEM, not the "
                    "certificate's key, or encrypted without the right KAFKA_SSL_KEY_PASSWORD",
                ) from None


def load_settings() -> Settings:
    """Settings from the environment; a bad value exits 2 with one line naming the variable.

    The line never quotes the value: it may be a secret."""
    try:
        return Settings()
    except ConfigurationError as exc:
        variable, message = exc.variable, exc.message
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        context = first.get("ctx") or {}
        variable = "_".join(str(part) for part in first["loc"]).upper() or str(
            context.get("variable", "configuration")
        )
        message = first["msg"]
    print(f"user-events-consumer: invalid {variable}: {message}", file=sys.stderr)
    raise SystemExit(2)
