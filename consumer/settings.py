"""Every knob of the service: its environment name, default and bounds, in one place."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration read from the environment (and nothing else reads the environment)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

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
    kafka_max_partition_fetch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    kafka_fetch_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_max_poll_interval_ms: int = Field(300_000, ge=1000)

    database_url: SecretStr = SecretStr("postgresql://postgres@localhost:5432/postgres")
    db_pool_min_size: int = Field(1, ge=0, le=100)
    db_pool_max_size: int = Field(4, ge=1, le=100)
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_command_timeout_seconds: float = Field(30.0, gt=0)
    db_pool_acquire_timeout_seconds: float = Field(10.0, gt=0)

    max_message_bytes: int = Field(1024 * 1024, ge=64, description="Larger records are poison.")
    retry_initial_seconds: float = Field(0.1, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    shutdown_timeout_seconds: float = Field(10.0, gt=0)

    failpoint_kill_after_db_commit: int = Field(
        0,
        ge=0,
        description="Testing only: SIGKILL the process right after the Nth batch's database "
        "commit, before its Kafka commit, to prove that a crash there loses and repeats nothing.",
    )

    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
