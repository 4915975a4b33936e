"""The contract files, the dead-letter headers and the configuration, without I/O."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from consumer.deadletter import (
    VALUE_OMITTED,
    VALUE_WAS_NULL,
    dead_letter_headers,
    dead_letter_message,
)
from consumer.records import KafkaRecord, Reason, Rejection
from schemas import build_event
from schemas.generate import SCHEMA_DIR, render_schemas


def test_the_json_schema_files_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == rendered, "run `make schemas` and commit the result"


def test_the_builder_refuses_events_the_contract_refuses() -> None:
    with pytest.raises(ValueError):
        build_event("user.created", "u1", {"email": "not-an-email", "name": "A"})
    with pytest.raises(ValueError):
        build_event("user.renamed", "u1", {})


def test_dead_letter_headers_keep_the_original_ones_first_and_add_provenance() -> None:
    record = KafkaRecord(
        "user-events", 4, 1234, 1_700_000_000_123, b"k", b"v", (("trace", b"abc"),)
    )
    headers = dead_letter_headers(
        record,
        Rejection(Reason.INVALID, "data.email: value_error"),
        "grp",
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert headers[0] == ("trace", b"abc")
    assert dict(headers[1:]) == {
        "dlq.reason": b"invalid",
        "dlq.error": b"data.email: value_error",
        "dlq.original.topic": b"user-events",
        "dlq.original.partition": b"4",
        "dlq.original.offset": b"1234",
        "dlq.original.timestamp": b"1700000000123",
        "dlq.consumer.group": b"grp",
        "dlq.failed.at": b"2026-01-02T03:04:05.000+00:00",
    }


FAILED_AT = datetime(2026, 1, 2, tzinfo=UTC)
LIMIT = 64 * 1024  # the producer's max_request_size in these tests


def test_a_dead_letter_keeps_the_key_and_value_byte_for_byte() -> None:
    record = KafkaRecord("t", 0, 1, 0, b"k", b"x" * (LIMIT - 4096), ())
    key, value, headers = dead_letter_message(
        record, Rejection(Reason.TOO_LARGE, "x"), "g", FAILED_AT, LIMIT
    )
    assert (key, value) == (record.key, record.value)
    assert "dlq.value" not in dict(headers)


def test_a_dead_letter_the_producer_would_refuse_goes_without_its_value() -> None:
    """Over the producer's limit it would be refused on every retry; the provenance
    headers still say where the record is."""
    record = KafkaRecord("t", 0, 1, 0, b"k", b"x" * LIMIT, ())
    key, value, headers = dead_letter_message(
        record, Rejection(Reason.TOO_LARGE, "too big"), "g", FAILED_AT, LIMIT
    )
    assert key == b"k" and value is None
    assert dict(headers)["dlq.value"] == VALUE_OMITTED.encode()
    assert dict(headers)["dlq.original.offset"] == b"1"


@pytest.mark.parametrize(("size", "expected"), [(None, VALUE_WAS_NULL), (LIMIT, VALUE_OMITTED)])
def test_a_dead_letter_without_key_and_value_gets_an_empty_value(
    size: int | None, expected: str
) -> None:
    """Kafka producers refuse a record with neither (aiokafka asserts)."""
    record = KafkaRecord("t", 0, 1, 0, None, None if size is None else b"x" * size, ())
    key, value, headers = dead_letter_message(
        record, Rejection(Reason.UNDECODABLE, "x"), "g", FAILED_AT, LIMIT
    )
    assert key is None and value == b""
    assert dict(headers)["dlq.value"] == expected.encode()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PORT", "not-a-port"),
        ("HTTP_PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("KAFKA_MAX_POLL_RECORDS", "0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "run"],
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["run", "migrate", "dev"])
def test_every_subcommand_has_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "usage:" in result.stdout
