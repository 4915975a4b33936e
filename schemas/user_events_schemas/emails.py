"""The contract's email type: pydantic's ``EmailStr``, with the domain check remembered.

``EmailStr`` runs email-validator on every address, and most of its time goes to the
domain (IDNA and Unicode checks per character): about 20 µs of the 29 µs an address
costs, where a whole event decodes in 7. Addresses share few domains, so the verdict on
each domain is remembered. An address takes the fast way only when its shape leaves
nothing else to decide: a plain ASCII dot-atom before the ``@``, that the library
returns unchanged, and a domain the library has accepted before (its normalized form
is the library's own). Any other address goes through ``EmailStr``'s own check, so
accepted addresses, their normalized form and the errors are the library's; a
property test holds the two ways equal.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

import email_validator
from email_validator.rfc_constants import ATEXT, CASE_INSENSITIVE_MAILBOX_NAMES
from pydantic import AfterValidator, WithJsonSchema
from pydantic.networks import MAX_EMAIL_LENGTH, validate_email

from user_events_schemas.patterns import EMAIL_SHAPE

# The library's dot-atom local part (RFC 5322), all ASCII, then a domain of ASCII labels.
_PLAIN_ADDRESS = re.compile(
    rf"(?P<local>[{ATEXT}]+(?:\.[{ATEXT}]+)*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
# Local parts the library lowercases (RFC 2142): left to it.
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_LOCAL_MAX = 64  # RFC 5321; longer ones are left to the library
_ADDRESS_MAX = 254  # the library's limit on the whole address
_DOMAINS_REMEMBERED = 4096


def normalized_email(value: str) -> str:
    """``value`` as ``EmailStr`` validates and normalizes it; raises its error otherwise."""
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is not None and len(value) <= _ADDRESS_MAX:
        local = plain["local"]
        if len(local) <= _LOCAL_MAX and local.lower() not in _MAILBOX_NAMES:
            domain = _accepted_domain(plain["domain"])
            if domain is not None:
                return f"{local}@{domain}"
    return validate_email(value)[1]


@lru_cache(maxsize=_DOMAINS_REMEMBERED)
def _accepted_domain(domain: str) -> str | None:
    """The normalized domain, if the library accepts it; None if it does not, or if its
    normalized form changes length (IDNA), which the length limit above does not cover."""
    try:
        checked = email_validator.validate_email(f"a@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    normalized: str = checked.domain
    return normalized if normalized == domain.lower() else None


Email = Annotated[
    str,
    AfterValidator(normalized_email),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": MAX_EMAIL_LENGTH,
            "pattern": EMAIL_SHAPE,
        }
    ),
]
"""An email address, validated and normalized as pydantic's ``EmailStr`` does."""
