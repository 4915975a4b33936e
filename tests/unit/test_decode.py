"""Decoding and validation of Kafka records against the contract, without I/O."""

from __future__ import annotations

import json

import pytest

from consumer import decode as decode_module
from consumer.decode import decode, decode_all
from consumer.records import KafkaRecord, Reason, Rejection
from schemas import binary_record, build_event, structured_record


def record(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> KafkaRecord:
    return KafkaRecord("t", 0, 7, 1_700_000_000_000, b"k", value, tuple(headers or ()))


def created_event(**overrides: object) -> dict[str, object]:
    event = build_event(
        "user.created", "u1", {"email": "ada@example.com", "name": "Ada"}, sequence=3
    )
    return event | overrides


def test_structured_and_binary_modes_decode_to_the_same_event() -> None:
    event = created_event()
    _, value, headers = structured_record(event)
    structured = decode(record(value, headers), 10_000)
    _, value, headers = binary_record(event)
    binary = decode(record(value, headers), 10_000)
    assert not isinstance(structured, Rejection) and not isinstance(binary, Rejection)
    assert structured.model_dump(exclude={"datacontenttype"}) == binary.model_dump(
        exclude={"datacontenttype"}
    )
    assert binary.sequence == 3 and binary.data.email == "ada@example.com"


def test_sequence_may_be_a_decimal_string() -> None:
    decoded = decode(record(json.dumps(created_event(sequence="42")).encode()), 10_000)
    assert not isinstance(decoded, Rejection) and decoded.sequence == 42


def test_unknown_fields_inside_data_are_ignored() -> None:
    event = created_event(data={"email": "a@example.com", "name": "A", "plan": "gold"})
    assert not isinstance(decode(record(json.dumps(event).encode()), 10_000), Rejection)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, Reason.UNDECODABLE),
        (b"\xff\xfe\x00", Reason.UNDECODABLE),
        (b"{not json", Reason.UNDECODABLE),
        (b"[1, 2]", Reason.UNDECODABLE),
        (b'"a string"', Reason.UNDECODABLE),
        (json.dumps(created_event(type="user.renamed")).encode(), Reason.UNKNOWN_TYPE),
        (json.dumps(created_event(specversion="0.3")).encode(), Reason.INVALID),
        (json.dumps(created_event(time="yesterday")).encode(), Reason.INVALID),
        (json.dumps(created_event(time="2026-01-01T00:00:00")).encode(), Reason.INVALID),
        (json.dumps(created_event(sequence=0)).encode(), Reason.INVALID),
        (json.dumps(created_event(id="")).encode(), Reason.INVALID),
        (json.dumps(created_event(subject="x" * 129)).encode(), Reason.INVALID),
        (json.dumps(created_event(data={"email": "nope", "name": "A"})).encode(), Reason.INVALID),
        (
            json.dumps(created_event(data={"email": "a@example.com", "name": ""})).encode(),
            Reason.INVALID,
        ),
        (
            json.dumps({k: v for k, v in created_event().items() if k != "type"}).encode(),
            Reason.INVALID,
        ),
    ],
)
def test_poison_values_are_rejected_with_their_reason(value: bytes | None, reason: Reason) -> None:
    verdict = decode(record(value), 10_000)
    assert isinstance(verdict, Rejection) and verdict.reason is reason


def test_an_update_needs_at_least_one_field() -> None:
    event = build_event("user.updated", "u1", {"name": "B"}) | {"data": {"plan": "gold"}}
    verdict = decode(record(json.dumps(event).encode()), 10_000)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.INVALID


@pytest.mark.parametrize("sequence", [2**63, str(2**63)])
def test_a_sequence_beyond_what_postgresql_stores_is_invalid(sequence: object) -> None:
    """Not a failure of the batch carrying it: a dead letter naming the field."""
    verdict = decode(record(json.dumps(created_event(sequence=sequence)).encode()), 10_000)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.INVALID
    assert "sequence" in verdict.error
    largest = decode(record(json.dumps(created_event(sequence=2**63 - 1)).encode()), 10_000)
    assert not isinstance(largest, Rejection) and largest.sequence == 2**63 - 1


def test_a_delete_may_come_without_data() -> None:
    event = build_event("user.deleted", "u1")
    assert "data" not in event
    assert not isinstance(decode(record(json.dumps(event).encode()), 10_000), Rejection)


def test_records_over_the_size_limit_are_too_large() -> None:
    verdict = decode(record(json.dumps(created_event()).encode()), 100)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.TOO_LARGE


def test_headers_count_towards_the_size_limit() -> None:
    value = json.dumps(created_event()).encode()
    limit = len(value) + 10
    assert not isinstance(decode(record(value), limit), Rejection)
    verdict = decode(record(value, [("trace", b"x" * 20)]), limit)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.TOO_LARGE


def test_a_binary_mode_value_nested_past_the_recursion_limit_is_undecodable() -> None:
    _, _, headers = binary_record(created_event())
    deep = b'{"email": "a@example.com", "name": "A", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    verdict = decode(record(deep, headers), 10**6)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE


def test_a_record_the_decoder_fails_on_is_dead_lettered_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in decoding must not fail the batch on every retry."""

    def broken(record: KafkaRecord, max_bytes: int) -> object:
        raise KeyError("bug")

    monkeypatch.setattr(decode_module, "decode", broken)
    ((_, verdict),) = decode_all([record(b"{}")], 10_000)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE
    assert verdict.error == "the decoder failed: KeyError"


def test_binary_mode_with_a_value_that_is_not_json_is_undecodable() -> None:
    _, _, headers = binary_record(created_event())
    verdict = decode(record(b"{oops", headers), 10_000)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE


def test_rejection_messages_never_quote_the_payload() -> None:
    event = created_event(data={"email": "secret-person@@example.com", "name": "Secret Person"})
    verdict = decode(record(json.dumps(event).encode()), 10_000)
    assert isinstance(verdict, Rejection)
    assert "secret" not in verdict.error.lower() and "data.email" in verdict.error
