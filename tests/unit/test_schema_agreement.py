"""The JSON Schema files and the consumer's decoder accept and refuse the same events,
and the publishers' validator gives each the consumer's reason and errors.

Hypothesis writes events as publishers might, valid ones and mutations of them; each goes
through the shipped schema files (jsonschema's Draft 2020-12 validator, format checking
on, patterns in ECMA-262 as the specification says) and through the consumer's decoder
as a structured-mode record. They must agree, except where the README documents that
they cannot ("The event contract", "What the JSON Schemas cannot say"), and each of those
cases is recognized by exactly what it is, never by a blanket exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import regress
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators
from schemagen.jsonschemas import SCHEMA_DIR
from user_events_schemas.models import EVENT_TYPES, MAX_SEQUENCE
from user_events_schemas.rejections import FieldError, Rejection
from user_events_schemas.validate import verdict
from user_events_schemas.verdicts import NOT_STORABLE, is_storable

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord
from tests.unit.contract_events import BREAKS, events

SCHEMAS = {path.name: json.loads(path.read_text()) for path in SCHEMA_DIR.glob("*.schema.json")}
STRUCTURED = (("content-type", b"application/cloudevents+json"),)


@cache
def _ecma_regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, flags="u")


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``pattern`` as JSON Schema defines it, in ECMA-262 (what check-jsonschema does):
    jsonschema's own ``re.search`` lets ``$`` match before a final newline."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).find(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})
FORMATS = Draft202012Validator.FORMAT_CHECKER
ANY_EVENT = EcmaValidator(SCHEMAS["user-event.schema.json"], format_checker=FORMATS)
BY_TYPE = {
    name: EcmaValidator(SCHEMAS[f"{name}.schema.json"], format_checker=FORMATS)
    for name in EVENT_TYPES
}
PYTHON_RE = Draft202012Validator(SCHEMAS["user-event.schema.json"], format_checker=FORMATS)
EMAIL = EcmaValidator(
    SCHEMAS["user.created.schema.json"]["$defs"]["UserCreatedData"]["properties"]["email"],
    format_checker=FORMATS,
)


def consumer_verdict(event: Any) -> Rejection | None:
    """None if the consumer applies the event, else its rejection: the decoder's, or the
    store's for a string PostgreSQL cannot hold (tests/integration/test_store.py)."""
    value = json.dumps(event).encode()
    verdict = decode(KafkaRecord("t", 0, 0, 0, None, value, STRUCTURED), 2**31)
    if isinstance(verdict, Rejection):
        return verdict
    return None if is_storable(verdict) else NOT_STORABLE


def documented_difference(event: Any, rejection: Rejection) -> str | None:
    """Which documented differences, if any, explain an event that the schemas accept
    and the consumer refuses: each of the consumer's errors is one of them (hypothesis
    can draw two at once, such as an out-of-range offset and a reserved domain)."""
    reasons = [_documented(event, error) for error in rejection.errors]
    if not reasons or None in reasons:
        return None
    return "; ".join(reason for reason in reasons if reason is not None)


def _documented(event: Any, error: FieldError) -> str | None:
    if error == FieldError("data.email", "value_error") and EMAIL.is_valid(event["data"]["email"]):
        return "email-validator refuses an address of the right shape"
    sequence = event.get("sequence")
    if (
        error == FieldError("sequence", "sequence_type")
        and isinstance(sequence, float)
        and sequence.is_integer()
        and 1 <= sequence <= MAX_SEQUENCE
    ):
        return "a whole sequence written with a fraction or an exponent (7.0, 1e3)"
    time = event.get("time")
    if error == FieldError("time", "time_out_of_range") and (
        (time[:10] == "0001-01-01" and "+" in time[19:])
        or (time[:10] == "9999-12-31" and "-" in time[19:])
    ):
        return "only the offset takes the instant out of the years 1 to 9999 in UTC"
    return None


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


VALID = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "/signup-service",
    "type": "user.updated",
    "subject": "u-1",
    "time": "2026-11-25T10:15:30.120Z",
    "data": {"name": "Ada"},
}


def assert_agreement(event: Any) -> None:
    """The schema files and the consumer give ``event`` the same verdict, or one of the
    documented differences explains why not."""
    refused = consumer_verdict(event)
    accepted = ANY_EVENT.is_valid(event)
    if accepted and refused is not None:
        assert documented_difference(event, refused), (
            f"the schemas accept an event the consumer dead-letters: {refused}"
        )
    else:
        assert accepted == (refused is None), "the schemas refuse an event the consumer applies"
    if isinstance(event, dict) and isinstance(event.get("type"), str) and event["type"] in BY_TYPE:
        assert BY_TYPE[event["type"]].is_valid(event) == accepted
    # The publishers' validator says what the consumer does, reason and errors.
    ours = verdict(json.dumps(event).encode())
    assert (ours and (ours.reason, ours.errors)) == (refused and (refused.reason, refused.errors))
    # Python's re lets "$" match before a final newline: that, and only that, differs.
    if PYTHON_RE.is_valid(event) != accepted:
        assert not accepted and any(text.endswith("\n") for text in strings_in(event))


@pytest.mark.parametrize("rule", sorted(BREAKS))
# No "explain" phase: it varies a failing event's parts for minutes.
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(data=st.data())
def test_the_json_schemas_accept_and_refuse_what_the_consumer_does(
    rule: str, data: st.DataObject
) -> None:
    """Per rule of the contract, events broken at that rule: the schemas and the consumer
    agree on each."""
    event = data.draw(events(rule), label="event")
    assert_agreement(event)


NAMED_EVENTS = {
    "an update without fields": VALID | {"data": {}},  # the schema let it pass
    "an update with null fields only": VALID | {"data": {"email": None}},
    "a sequence as a decimal string": VALID | {"sequence": "42"},  # the schema refused it
    "a sequence with leading zeros": VALID | {"sequence": "007"},
    "a sequence of zero": VALID | {"sequence": "0"},
    "a sequence past 2^63-1": VALID | {"sequence": "9223372036854775808"},
    "February 29 of a common year": VALID | {"time": "2023-02-29T00:00:00Z"},
    "February 29 of a leap year": VALID | {"time": "2024-02-29T23:59:59.9999999+23:59"},
    "U+FEFF in a source": VALID | {"source": "/a\ufeff"},  # whitespace to ECMA-262 only
    "U+001C in a source": VALID | {"source": "/a\x1c"},  # whitespace to Python only
    "U+00A0 in a source": VALID | {"source": "/a\xa0"},
    "U+0000 in a name": VALID | {"data": {"name": "A\x00"}},
    "a deletion with null data": VALID | {"type": "user.deleted", "data": None},
    "an unknown type": VALID | {"type": "user.renamed"},
}


@pytest.mark.parametrize("event", NAMED_EVENTS.values(), ids=NAMED_EVENTS)
def test_named_events_get_the_same_verdict_from_the_schemas_and_the_consumer(
    event: dict[str, Any],
) -> None:
    assert_agreement(event)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "user.created", "data": {"email": "ada@example.local", "name": "Ada"}},
        {"data": {"email": "ada@example.test"}},
        {"sequence": 7.0},
        {"sequence": 1e3},
        {"time": "0001-01-01T00:30:00+01:00"},
        {"time": "9999-12-31T23:30:00-01:00"},
    ],
)
def test_each_documented_difference_is_real_and_recognized(overrides: dict[str, Any]) -> None:
    """The README's list is the truth: if the consumer started to accept one of these,
    or the schemas to refuse it, the list would have to change."""
    event = json.loads(json.dumps(VALID | overrides))
    refused = consumer_verdict(event)
    assert ANY_EVENT.is_valid(event) and refused is not None
    assert documented_difference(event, refused)


def test_python_re_lets_a_final_newline_through_where_ecma_262_does_not() -> None:
    event = VALID | {"sequence": "42\n"}
    assert PYTHON_RE.is_valid(event) and not ANY_EVENT.is_valid(event)
    assert consumer_verdict(event) is not None
