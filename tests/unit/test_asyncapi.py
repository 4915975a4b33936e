"""schemas/asyncapi.yaml: generated from the models, in step with what the consumer
accepts and what its dead letters carry. Pure: the official parser's check is in
tests/asyncapi/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from schemagen.asyncapi import document, render
from user_events_schemas.wire import (
    DLQ_ERRORS,
    DLQ_OCCASIONAL_HEADERS,
    DLQ_PROVENANCE_HEADERS,
    DLQ_REDRIVE_COUNT,
)

from consumer.core.decode import decode
from consumer.core.records import FieldError, KafkaRecord, Reason, Rejection
from consumer.edges.deadletter import dead_letter_message

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.yaml"


def test_the_asyncapi_document_matches_the_models() -> None:
    assert DOCUMENT.read_text() == render(), "run `make schemas` and commit the result"


def test_a_yaml_reader_reads_the_document_as_the_data_it_was_written_from() -> None:
    assert yaml.safe_load(DOCUMENT.read_text()) == document()


def test_the_document_describes_every_dead_letter_header_the_contract_names_and_no_other() -> None:
    documented = document()["components"]["schemas"]["DeadLetterHeaders"]
    assert documented["required"] == list(DLQ_PROVENANCE_HEADERS)
    assert list(documented["properties"]) == [*DLQ_PROVENANCE_HEADERS, *DLQ_OCCASIONAL_HEADERS]


def test_the_document_describes_every_reason_in_the_consumers_order() -> None:
    reasons = document()["components"]["schemas"]["DeadLetterReason"]
    assert reasons["enum"] == [str(reason) for reason in Reason]
    assert all(f"- `{reason}`: {reason.meaning}" in reasons["description"] for reason in Reason)


def validator(ref: str) -> jsonschema.Draft7Validator:
    """A validator of the document's schema at ``ref``, its references resolved inside it
    (AsyncAPI's schemas are a superset of JSON Schema draft 7)."""
    components = document()["components"]
    return jsonschema.Draft7Validator({"$ref": ref, "components": components})


def messages() -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["messages"]
    return found


def schema_of(part: dict[str, Any]) -> jsonschema.Draft7Validator:
    if "$ref" in part:
        return validator(part["$ref"])
    return jsonschema.Draft7Validator({**part, "components": document()["components"]})


@pytest.mark.parametrize("name", [m for m in messages() if m != "deadLetter"])
def test_each_message_example_fits_its_schemas_and_the_consumer_accepts_it(name: str) -> None:
    message = messages()[name]
    [example] = message["examples"]
    schema_of(message["payload"]).validate(example["payload"])
    schema_of(message["headers"]).validate(example["headers"])
    headers = tuple((k, v.encode()) for k, v in example["headers"].items())
    value = json.dumps(example["payload"]).encode()
    verdict = decode(KafkaRecord("user-events", 0, 0, 0, b"u-42", value, headers), 1_000_000)
    assert not isinstance(verdict, Rejection), verdict
    assert verdict.type == example["headers"].get("ce_type", example["payload"].get("type"))


@pytest.mark.parametrize(
    ("record", "rejection", "at_least_dropped"),
    [
        (
            KafkaRecord("user-events", 3, 41, 1_700_000_000_000, b"u-1", b"{", (("h", None),)),
            Rejection(
                Reason.UNDECODABLE, "value is not JSON", errors=(FieldError("", "json_invalid"),)
            ),
            0,
        ),
        (
            KafkaRecord("user-events", 0, 7, -1, b"u-2", b"{}", ((DLQ_REDRIVE_COUNT, b"2"),)),
            Rejection(
                Reason.CONFLICT,
                "email belongs to another active user: u-9",
                errors=(FieldError("data.email", "conflict", "u-9"),),
            ),
            0,
        ),
        (
            KafkaRecord("user-events", 1, 9, 0, b"k", b"v", ()),
            Rejection(Reason.TOO_LARGE, "too big"),
            2,
        ),
        (
            KafkaRecord("user-events", 5, 0, 0, None, None, ()),
            Rejection(Reason.UNDECODABLE, "null value"),
            0,
        ),
    ],
    ids=["undecodable", "conflict after a redrive", "dropped value and key", "no key nor value"],
)
def test_the_consumers_dead_letters_fit_the_documented_headers(
    record: KafkaRecord, rejection: Rejection, at_least_dropped: int
) -> None:
    failed_at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    letter = dead_letter_message(
        record, rejection, "user-events-consumer", failed_at, 1 << 20, at_least_dropped
    )
    headers = {name: value.decode() for name, value in letter.headers if value is not None}
    validator("#/components/schemas/DeadLetterHeaders").validate(headers)
    validator("#/components/schemas/DeadLetterErrors").validate(json.loads(headers[DLQ_ERRORS]))
