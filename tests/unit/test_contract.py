"""The contract files, the dead-letter headers and the configuration, without I/O."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest
import user_events_schemas
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from schemagen.jsonschemas import SCHEMA_DIR, render_schemas, schema_id
from user_events_schemas import binary_record, build_event, structured_record
from user_events_schemas.models import EVENT_TYPES, MODELS
from user_events_schemas.wire import (
    DLQ_DROPPED,
    DLQ_OCCASIONAL_HEADERS,
    DLQ_PARKED_AT,
    DLQ_PARKED_SECONDS,
    DLQ_PROVENANCE_HEADERS,
    DLQ_VALUE,
)

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.edges.deadletter import (
    DROP_ORDER,
    VALUE_WAS_NULL,
    DeadLetterMessage,
    dead_letter_headers,
    dead_letter_message,
)
from consumer.pipeline.unreadable import UNREADABLE, StandIn, reject_stand_ins

CONTRACT = "user_events_schemas"


def test_the_json_schema_files_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == rendered, "run `make schemas` and commit the result"


def test_each_schema_file_is_draft_2020_12_named_by_its_id_with_data_anchors() -> None:
    """A CloudEvent's dataschema can name the schema of its data: the anchor resolves."""
    files = {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.schema.json")}
    for name, schema in files.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == schema_id(name.removesuffix(".schema.json"))
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in files.values()
    )
    per_type = {f"{event_type}.schema.json" for event_type in EVENT_TYPES}
    assert set(files) == per_type | {"user-event.schema.json"}  # and their union
    for event_type, model in MODELS.items():
        data = registry.resolver().lookup(f"{schema_id(event_type)}#{event_type}.data")
        data_model = get_args(model.model_fields["data"].annotation) or (
            model.model_fields["data"].annotation,
        )
        assert data.contents["title"] == data_model[0].__name__


def test_the_consumer_uses_the_contract_through_its_public_face_only() -> None:
    """The package's modules are internal: what the consumer imports of it is what its
    ``__all__`` names, from the package itself, and each of those names is there."""
    imported: set[tuple[str, str]] = set()
    for path in (Path(__file__).parents[2] / "consumer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {(a.name, "") for a in node.names if a.name.startswith(CONTRACT)}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CONTRACT):
                imported |= {(node.module or "", alias.name) for alias in node.names}
    assert {module for module, _ in imported} == {CONTRACT}
    assert {name for _, name in imported} <= set(user_events_schemas.__all__)
    assert all(hasattr(user_events_schemas, name) for name in user_events_schemas.__all__)


def test_the_builder_refuses_events_the_contract_refuses() -> None:
    with pytest.raises(ValueError):
        build_event("user.created", "u1", {"email": "not-an-email", "name": "A"}, source="/tests")
    with pytest.raises(ValueError):
        build_event("user.renamed", "u1", {}, source="/tests")


def test_the_builder_has_no_default_source_so_publishers_never_share_one() -> None:
    with pytest.raises(TypeError, match="source"):
        build_event("user.deleted", "u1")  # type: ignore[call-arg]
    assert build_event("user.deleted", "u1", source="/billing")["source"] == "/billing"


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
        "dlq.errors": b'[{"loc":"","type":"invalid"}]',
        "dlq.original.topic": b"user-events",
        "dlq.original.partition": b"4",
        "dlq.original.offset": b"1234",
        "dlq.original.timestamp": b"1700000000123",
        "dlq.consumer.group": b"grp",
        "dlq.failed.at": b"2026-01-02T03:04:05.000+00:00",
    }


def test_every_dead_letter_carries_the_contracts_provenance_headers_in_its_order() -> None:
    """The AsyncAPI document requires ``DLQ_PROVENANCE_HEADERS``: the consumer writes those,
    and any other ``dlq.*`` header it adds is one the contract names too."""
    record = KafkaRecord("user-events", 0, 5, 0, None, None, ())
    failed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    parked_at = datetime(2026, 1, 1, 3, 4, 5, tzinfo=UTC)
    names = [
        name
        for name, _ in dead_letter_message(
            record,
            Rejection(Reason.UNKNOWN_USER, "never created"),
            "g",
            failed_at,
            1 << 20,
            parked_at=parked_at,
        ).headers
    ]
    assert names[: len(DLQ_PROVENANCE_HEADERS)] == list(DLQ_PROVENANCE_HEADERS)
    assert (
        set(names[len(DLQ_PROVENANCE_HEADERS) :])
        == {
            DLQ_PARKED_AT,
            DLQ_PARKED_SECONDS,
            DLQ_VALUE,
        }
        <= set(DLQ_OCCASIONAL_HEADERS)
    )


def test_a_dead_letter_names_a_field_by_the_same_path_in_dlq_error_and_dlq_errors() -> None:
    """Issue 23: ``time``, not pydantic's ``user.created.time``, in either mode."""
    event = build_event(
        "user.created", "u1", {"email": "ada@example.com", "name": "Ada"}, source="/tests"
    ) | {"time": "yesterday", "data": {"email": "nope", "name": "A"}}
    for to_record in (structured_record, binary_record):
        key, value, raw_headers = to_record(event)
        record = KafkaRecord("user-events", 0, 1, 0, key, value, tuple(raw_headers))
        rejection = decode(record, 10**6)
        assert isinstance(rejection, Rejection)
        headers = dict(
            dead_letter_headers(record, rejection, "grp", datetime(2026, 1, 2, tzinfo=UTC))
        )
        assert headers["dlq.error"] == b"time: time_format; data.email: value_error"
        assert json.loads(headers["dlq.errors"] or b"") == [
            {"loc": "time", "type": "time_format"},
            {"loc": "data.email", "type": "value_error"},
        ]


FAILED_AT = datetime(2026, 1, 2, tzinfo=UTC)
LIMIT = 64 * 1024  # the producer's max_request_size in these tests
TOO_LARGE = Rejection(Reason.TOO_LARGE, "too big")


def letter(record: KafkaRecord, at_least_dropped: int = 0) -> DeadLetterMessage:
    return dead_letter_message(record, TOO_LARGE, "g", FAILED_AT, LIMIT, at_least_dropped)


def provenance_of(message: DeadLetterMessage) -> dict[str, bytes | None]:
    return {k: v for k, v in message.headers if k.startswith("dlq.")}


def test_a_dead_letter_keeps_the_key_value_and_headers_byte_for_byte() -> None:
    record = KafkaRecord("t", 0, 1, 0, b"k", b"x" * (LIMIT - 4096), (("h", None), ("i", b"\xff")))
    message = letter(record)
    assert (message.key, message.value) == (record.key, record.value)
    assert tuple(message.headers[:2]) == record.headers  # null and binary values kept
    assert DLQ_DROPPED not in dict(message.headers) and message.dropped == ()


@pytest.mark.parametrize(
    ("key", "value", "headers", "dropped"),
    [
        (b"k", b"x" * LIMIT, (), ("value",)),
        (b"k" * LIMIT, b"v", (), ("value", "key")),
        (b"k", b"v", (("h", b"x" * LIMIT),), ("value", "key", "headers")),
        (b"k", b"v", tuple((f"h{i}", None) for i in range(20_000)), ("value", "key", "headers")),
        (None, None, (("h", b"x" * LIMIT),), ("value", "key", "headers")),
    ],
    ids=["big value", "big key", "big header", "many headers", "no key nor value"],
)
def test_a_dead_letter_over_the_limit_drops_value_then_key_then_headers_until_it_fits(
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes | None], ...],
    dropped: tuple[str, ...],
) -> None:
    """Over the producer's limit it would be refused on every retry: parts of the record
    go, in a fixed order, and the provenance headers stay and say what went."""
    record = KafkaRecord("t", 0, 1, 0, key, value, headers)
    message = letter(record)
    assert message.dropped == dropped
    assert provenance_of(message)[DLQ_DROPPED] == ",".join(dropped).encode()
    assert provenance_of(message)["dlq.original.offset"] == b"1"
    assert provenance_of(message)["dlq.reason"] == b"too_large"
    assert message.value == (b"" if message.key is None else None) or "value" not in dropped
    assert (
        DefaultRecordBatchBuilder.estimate_size_in_bytes(
            message.key, message.value, message.headers
        )
        <= LIMIT
    )


@pytest.mark.parametrize("at_least", [1, 2, 3])
def test_a_refused_dead_letter_drops_one_part_more_at_each_step(at_least: int) -> None:
    record = KafkaRecord("t", 0, 1, 0, b"k", b"v", (("h", b"x"),))
    message = letter(record, at_least)
    assert message.dropped == DROP_ORDER[:at_least]
    assert message.value == (b"" if at_least >= 2 else None)  # neither key nor value: empty
    assert (message.key is None) == (at_least >= 2)
    assert ("h", b"x") in message.headers or at_least == 3
    assert provenance_of(message)["dlq.reason"] == b"too_large"


def test_a_dead_letter_without_key_and_value_gets_an_empty_value() -> None:
    """Kafka producers refuse a record with neither (aiokafka asserts)."""
    record = KafkaRecord("t", 0, 1, 0, None, None, ())
    message = dead_letter_message(record, Rejection(Reason.UNDECODABLE, "x"), "g", FAILED_AT, LIMIT)
    assert message.key is None and message.value == b""
    assert dict(message.headers)["dlq.value"] == VALUE_WAS_NULL.encode()


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


def test_a_stand_in_for_an_unparseable_record_is_rejected_as_such_and_says_nothing_was_read() -> (
    None
):
    chunk = [
        # a plain poison record, as aiokafka hands it over: offset 1 of partition 0
        SimpleNamespace(
            topic="t", partition=0, offset=1, timestamp=0, key=b"k", value=b"{", headers=()
        ),
        StandIn("t", 1, 1),  # offset 1 of partition 1: the client could not parse it
    ]
    records = [KafkaRecord.from_consumer_record(m) for m in chunk]
    null_value = Rejection(Reason.UNDECODABLE, "null value")
    poison = reject_stand_ins(chunk, [(records[0], null_value), (records[1], null_value)])
    assert poison == [(records[0], null_value), (records[1], UNREADABLE)]
    message = dead_letter_message(records[1], UNREADABLE, "g", FAILED_AT, LIMIT)
    assert (
        message.dropped == DROP_ORDER and dict(message.headers)[DLQ_DROPPED] == b"value,key,headers"
    )
    assert "dlq.value" not in dict(message.headers)  # not a null record: an unread one
    assert reject_stand_ins(chunk[:1], poison[:1]) == poison[:1]
