"""The contract's ``Email`` accepts, normalizes and rejects exactly as pydantic's ``EmailStr``."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError
from user_events_schemas.emails import Email, _accepted_domain, normalized_email

_reference: TypeAdapter[str] = TypeAdapter(EmailStr)
_ours: TypeAdapter[str] = TypeAdapter(Email)


def _verdict(adapter: TypeAdapter[str], value: str) -> tuple[str, str]:
    try:
        return "valid", adapter.validate_python(value)
    except ValidationError as exc:
        (error,) = exc.errors(include_url=False)
        return error["type"], error["msg"]


def _assert_same(value: str) -> None:
    _accepted_domain.cache_clear()
    first = _verdict(_ours, value)  # the domain's verdict is not remembered yet
    second = _verdict(_ours, value)  # now it is
    assert first == second == _verdict(_reference, value)


EDGE_CASES = [
    "u1@bench.example",
    "Mixed.Case+tag@Example.COM",
    "a@b.co",
    "POSTMASTER@example.com",  # the library lowercases RFC 2142 mailbox names
    "Abuse@Example.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",  # longer local parts are left to the library
    "a@" + ".".join(["abcdefghij" * 6 + "abc"] * 4),  # a domain near the length limit
    "a" * 60 + "@" + ".".join(["b" * 63] * 3),  # over the 254 limit in all
    "user@xn--bcher-kva.example",  # IDNA: normalized to Unicode, a different length
    "user@bücher.example",
    "用户@例子.广告",
    "user@localhost",
    "user@example.local",  # a special-use domain
    "user@example.test",
    "user@123.456",
    "user@-example.com",
    "user@example-.com",
    "user@exa_mple.com",
    "user@[127.0.0.1]",
    '"quoted"@example.com',
    "John Doe <john@example.com>",
    " padded@example.com ",
    "two..dots@example.com",
    ".lead@example.com",
    "trail.@example.com",
    "no-at-sign",
    "a@b@example.com",
    "line\nbreak@example.com",
    "",
]


@pytest.mark.parametrize("value", EDGE_CASES)
def test_named_edge_cases_agree_with_email_str(value: str) -> None:
    _assert_same(value)


_ASCII_PARTS = st.text(
    alphabet=st.sampled_from("abcXYZ019.-_+!#$%&'*/=?^`{|}~\"@ <>[]()\\,;:"), max_size=20
)
_DOMAINS = st.sampled_from(
    ["example.com", "EXAMPLE.com", "localhost", "example.local", "a.b", "xn--bcher-kva.example"]
)


@settings(max_examples=400, deadline=None)
@given(local=_ASCII_PARTS, domain=st.one_of(_DOMAINS, _ASCII_PARTS))
@example(local="postmaster", domain="example.com")
def test_generated_addresses_agree_with_email_str(local: str, domain: str) -> None:
    _assert_same(f"{local}@{domain}")


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40))
def test_any_text_agrees_with_email_str(value: str) -> None:
    _assert_same(value)


def test_a_domain_is_checked_once_and_its_verdict_remembered() -> None:
    _accepted_domain.cache_clear()
    assert normalized_email("a@Example.COM") == "a@example.com"
    assert normalized_email("b@Example.COM") == "b@example.com"
    with pytest.raises(ValueError):
        normalized_email("c@example.local")
    with pytest.raises(ValueError):
        normalized_email("d@example.local")
    info = _accepted_domain.cache_info()
    assert (info.misses, info.hits) == (2, 2)
