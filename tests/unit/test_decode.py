"""Decoding and validation of Kafka records against the contract, without I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timezone
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator, core_schema
from user_events_schemas import binary_record, build_event, structured_record
from user_events_schemas.models import RFC3339_PATTERN, EventTime

from consumer.core import decode as decode_module
from consumer.core.decode import decode, decode_all, stored_parts, stored_payload
from consumer.core.erasure import decode_logged
from consumer.core.records import KafkaRecord, Reason, Rejection
from consumer.core.rows import log_record
from tests.factories import created, record

created_event = partial(created, email="ada@example.com", name="Ada", seq=3)


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
    event = build_event("user.updated", "u1", {"name": "B"}, source="/tests") | {
        "data": {"plan": "gold"}
    }
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
    event = build_event("user.deleted", "u1", source="/tests")
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


def verdict_of(value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> object:
    return decode(record(value, headers), 10**6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sequence",
    [True, False, 1.0, 1.5, "1_000", " 1", "1 ", "+1", "-1", "0x10", "1e3", "\u0661", "", [1], {}],
)
def test_a_sequence_is_a_json_integer_or_ascii_digits_and_nothing_else(sequence: object) -> None:
    verdict = verdict_of(json.dumps(created_event(sequence=sequence)).encode())
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.INVALID
    assert verdict.error == "sequence: sequence_type"


@pytest.mark.parametrize(("sequence", "expected"), [(7, 7), ("7", 7), ("007", 7)])
def test_a_sequence_as_digits_is_its_integer(sequence: object, expected: int) -> None:
    verdict = verdict_of(json.dumps(created_event(sequence=sequence)).encode())
    assert not isinstance(verdict, Rejection) and verdict.sequence == expected


@pytest.mark.parametrize(
    ("time", "error"),
    [
        (1_700_000_000, "time_format"),
        (1_700_000_000.5, "time_format"),
        ("1700000000", "time_format"),
        ("2026-01-01T10:00Z", "time_format"),
        ("2026-01-01T10:00+01:00", "time_format"),
        ("2026-01-01 10:00:00Z", "time_format"),
        ("2026-01-01T10:00:00+0100", "time_format"),
        ("2026-01-01T10:00:00", "time_format"),
        ("2026-01-01", "time_format"),
        ("2026-02-30T10:00:00Z", "time_out_of_range"),
        ("2026-01-01T25:00:00Z", "time_out_of_range"),
        # Midnight as the day's end: newer Pythons' fromisoformat reads it as the next day.
        ("2020-01-01T24:00:00Z", "time_out_of_range"),
        ("9999-12-31T24:00:00Z", "time_out_of_range"),
        ("0001-01-01T00:00:00+00:01", "time_out_of_range"),
        ("9999-12-31T23:59:59-00:01", "time_out_of_range"),
    ],
)
def test_time_is_an_rfc3339_string_with_seconds_and_an_offset_that_can_be_stored(
    time: object, error: str
) -> None:
    for mode in ("structured", "binary"):
        event = created_event(time=time)
        _, value, headers = (structured_record if mode == "structured" else binary_record)(event)
        verdict = verdict_of(value, headers)  # type: ignore[arg-type]
        assert isinstance(verdict, Rejection) and verdict.reason is Reason.INVALID, mode
        assert verdict.error == f"time: {error}", mode


@pytest.mark.parametrize(
    "time",
    [
        "2026-01-01T10:00:00Z",
        "2026-01-01t10:00:00z",
        "2026-01-01T10:00:00.123456789+05:30",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_rfc3339_times_are_accepted_in_both_modes(time: str) -> None:
    for make in (structured_record, binary_record):
        _, value, headers = make(created_event(time=time))
        assert not isinstance(verdict_of(value, headers), Rejection)  # type: ignore[arg-type]


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_undecodable_in_both_modes(word: str) -> None:
    text = json.dumps(created_event())[:-1] + f', "x": {word}}}'
    verdict = verdict_of(text.encode())
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE
    _, _, headers = binary_record(created_event())
    data = f'{{"email": "a@example.com", "name": "A", "x": [{word}]}}'.encode()
    verdict = verdict_of(data, headers)  # type: ignore[arg-type]
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE


def test_nan_and_infinity_inside_strings_are_just_text() -> None:
    event = created_event(data={"email": "a@example.com", "name": "NaN Infinity"}, note="NaN")
    verdict = verdict_of(json.dumps(event).encode())
    assert not isinstance(verdict, Rejection) and verdict.data.name == "NaN Infinity"


def test_a_lone_surrogate_in_a_binary_value_is_undecodable() -> None:
    """No PostgreSQL text can hold it; the structured parser refuses it already."""
    _, _, headers = binary_record(created_event())
    verdict = verdict_of(b'{"email": "a@example.com", "name": "\\ud800"}', headers)  # type: ignore[arg-type]
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNDECODABLE


STRUCTURED_TYPE = ("content-type", b"application/cloudevents+json")


@pytest.mark.parametrize(
    ("headers", "mode"),
    [
        ([STRUCTURED_TYPE], "structured"),
        ([STRUCTURED_TYPE, ("ce_specversion", b"1.0")], "structured"),
        (
            [
                ("content-type", b"Application/CloudEvents+JSON; charset=utf-8"),
                ("ce_specversion", b"1.0"),
            ],
            "structured",
        ),
        ([("content-type", b"application/json")], "structured"),
        ([], "structured"),
        ([("ce_id", b"x"), ("ce_type", b"user.created")], "structured"),
        ([("content-type", b"application/json"), ("ce_specversion", b"1.0")], "binary"),
        ([("ce_specversion", b"1.0")], "binary"),
        ([("content-type", None), ("ce_specversion", b"1.0")], "binary"),
    ],
)
def test_the_mode_is_decided_as_the_kafka_protocol_binding_says(
    headers: list[tuple[str, bytes | None]], mode: str
) -> None:
    """content-type application/cloudevents* is structured whatever the headers; else a
    ce_specversion header is binary; else structured."""
    event = created_event()
    structured_value = json.dumps(event).encode()
    verdict = verdict_of(structured_value, headers)
    assert isinstance(verdict, Rejection) is (mode == "binary")


def test_too_large_counts_the_key_the_value_and_every_header() -> None:
    value = json.dumps(created_event()).encode()
    base = KafkaRecord("t", 0, 7, 0, b"k", value, ())
    limit = len(value) + 1
    assert not isinstance(decode(base, limit), Rejection)
    for oversized in (
        base._replace(key=b"kk"),
        base._replace(headers=(("h", None),)),
        base._replace(headers=(("", b"xx"),)),
    ):
        verdict = decode(oversized, limit)
        assert isinstance(verdict, Rejection) and verdict.reason is Reason.TOO_LARGE


def test_the_stored_payload_is_the_event_as_read_without_what_is_ignored() -> None:
    event = created_event(
        traceparent="00-x", weird="\u0000", data={"email": "a@example.com", "name": "A", "x": 1}
    )
    decoded = verdict_of(json.dumps(event).encode())
    assert not isinstance(decoded, Rejection)
    stored = json.loads(stored_payload(decoded))
    assert stored == {k: v for k, v in event.items() if k not in ("traceparent", "weird")} | {
        "data": {"email": None, "name": None},  # the values are kept apart, sealed
        "time": decoded.time.isoformat(),
    }
    assert stored_parts(decoded)[1] == {"email": "a@example.com", "name": "A"}
    plain = {**stored, "data": stored_parts(decoded)[1]}  # as rows from before keys held it
    again = decode_logged(log_record("t", 0, 0, json.dumps(plain)), None, {})
    assert again == decoded  # what rebuild reads back decodes to the same event


def test_the_stored_payload_leaves_out_absent_attributes_and_fields() -> None:
    update = build_event("user.updated", "u1", {"name": "B"}, source="/tests")
    decoded = verdict_of(json.dumps(update).encode())
    assert not isinstance(decoded, Rejection)
    stored = json.loads(stored_payload(decoded))
    assert "sequence" not in stored and "dataschema" not in stored
    assert stored["data"] == {"name": None}  # carried, and not kept in plain
    deleted = verdict_of(json.dumps(build_event("user.deleted", "u1", source="/tests")).encode())
    assert not isinstance(deleted, Rejection) and "data" not in json.loads(stored_payload(deleted))


def test_header_names_count_in_bytes_not_characters() -> None:
    value = json.dumps(created_event()).encode()
    record = KafkaRecord("t", 0, 7, 0, b"k", value, (("\u00e9", b""),))  # 1 character, 2 bytes
    limit = len(value) + 2
    verdict = decode(record, limit)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.TOO_LARGE
    assert not isinstance(decode(record, limit + 1), Rejection)


# The contract's time as pydantic's own datetime parser reads it, with the range the log
# can store: what the contract parsed with until its times took the standard library's
# zones (``models._instant``).
_PYDANTIC_DATETIME = core_schema.datetime_schema(
    tz_constraint="aware",
    ge=datetime(1, 1, 1, tzinfo=UTC),
    le=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)
_PYDANTIC_TIME = SchemaValidator(_PYDANTIC_DATETIME)
# Every two-digit field of the pattern, over all it passes, ends and edges drawn often.
_TWO_DIGITS = st.sampled_from([0, 1, 12, 13, 23, 24, 28, 29, 30, 31, 59, 60, 61, 99]) | st.integers(
    0, 99
)
_OFFSETS = st.sampled_from(["Z", "z", "+00:00", "-00:00"]) | st.builds(
    "{}{:02d}:{:02d}".format, st.sampled_from("+-"), _TWO_DIGITS, _TWO_DIGITS
)
_FRACTIONS = st.sampled_from(["", ".0", ".999999", ".9999995", ".0000009"]) | st.text(
    "0123456789", min_size=1, max_size=40
).map(".{}".format)


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Texts the contract's pattern passes: real dates and times near and far from the
    ends of the range (half of them), and impossible ones (a 30 February, an hour 24, a
    second 60, an offset's minute 75)."""
    if draw(st.booleans()):
        day = draw(st.dates())
        year, month, date = day.year, day.month, day.day
        hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(_TWO_DIGITS)
    else:
        year = draw(
            st.sampled_from([0, 1, 2, 1900, 2000, 2024, 2100, 9998, 9999]) | st.integers(0, 9999)
        )
        month, date = draw(_TWO_DIGITS), draw(_TWO_DIGITS)
        hour, minute, second = draw(_TWO_DIGITS), draw(_TWO_DIGITS), draw(_TWO_DIGITS)
    when = f"{year:04d}-{month:02d}-{date:02d}{draw(st.sampled_from('Tt'))}"
    return f"{when}{hour:02d}:{minute:02d}:{second:02d}{draw(_FRACTIONS)}{draw(_OFFSETS)}"


@settings(max_examples=2000, deadline=None)
@given(rfc3339_texts())
def test_the_contract_reads_a_time_as_pydantic_s_parser_does_with_the_standard_zones(
    text: str,
) -> None:
    assert re.fullmatch(RFC3339_PATTERN, text)
    encoded = json.dumps(text).encode()
    try:
        expected = _PYDANTIC_TIME.validate_json(encoded)
    except ValidationError:
        expected = None
    try:
        parsed = TypeAdapter(EventTime).validate_json(encoded)
    except ValidationError as exc:
        assert expected is None, text
        assert [e["type"] for e in exc.errors()] == ["time_out_of_range"], text
        return
    assert expected is not None, text
    # The same instant and the same offset, in a zone of the standard library's.
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset(), text
    assert parsed.replace(tzinfo=None) == expected.replace(tzinfo=None), text
    assert type(parsed.tzinfo) is timezone, text


# The same, for a publisher that builds a model from a datetime: checked as its text.
_PYDANTIC_TIME_FROM_PYTHON = SchemaValidator(
    core_schema.no_info_before_validator_function(
        lambda value: value.isoformat() if isinstance(value, datetime) else value,
        _PYDANTIC_DATETIME,
    )
)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_a_datetime_given_from_python_is_read_as_pydantic_s_parser_reads_its_text(
    moment: datetime,
) -> None:
    try:
        expected = _PYDANTIC_TIME_FROM_PYTHON.validate_python(moment)
    except ValidationError:
        expected = None
    try:
        parsed = TypeAdapter(EventTime).validate_python(moment)
    except ValidationError:
        # Naive, or an offset with seconds: RFC 3339 has neither.
        assert expected is None or not re.fullmatch(RFC3339_PATTERN, moment.isoformat())
        return
    assert expected is not None, moment
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset(), moment
    assert type(parsed.tzinfo) is timezone, moment
