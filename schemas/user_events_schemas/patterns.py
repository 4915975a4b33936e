"""The regular expressions the JSON Schemas carry, spelled so that they mean what the
consumer applies.

The models check times, sequences and sources with pydantic-core (a Rust regex, then
Rust parsers for dates and integers); a JSON Schema has only its ``pattern``, in the
ECMA-262 dialect. These patterns say in a regex what the parsers add: real dates (leap
years included), hours to 23, offsets to 23:59, integers up to 2^63-1. They use only what
ECMA-262, Python's ``re``, Go's RE2 and Rust's regex read alike: no lookaround, no
``\\s`` (which each of them defines differently), and non-ASCII characters written as
themselves.
"""

from __future__ import annotations

# Rust's ``\s`` (what the model's ``^\S+$`` refuses in a source): Unicode White_Space.
# ECMA-262's ``\s`` adds U+FEFF and Python's adds U+001C..U+001F, so they are listed.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# PostgreSQL's text and jsonb cannot hold U+0000: the consumer stores these strings, and
# a record holding one is dead-lettered when it is written (``not_storable``).
NUL = "\\x00"
NUL_FREE = f"^[^{NUL}]*$"
NON_BLANK_NUL_FREE = f"^[^{NUL}{WHITE_SPACE}]+$"


def decimal_at_most(limit: int) -> str:
    """A regex (unanchored) for the decimal numerals of 1 to ``limit``, without leading
    zeros: the digits of each shorter length, then, digit by digit, those below the
    limit's."""
    digits = str(limit)
    alternatives = []
    if len(digits) > 1:
        alternatives.append(f"[1-9][0-9]{{0,{len(digits) - 2}}}")
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            rest = len(digits) - i - 1
            below = f"[{lowest}-{int(digit) - 1}]"
            alternatives.append(digits[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "(?:" + "|".join(alternatives) + ")"


def positive_decimal_string(limit: int) -> str:
    """A string of ASCII digits whose value is 1 to ``limit``; leading zeros allowed, as
    the consumer reads ``"007"`` as 7."""
    return f"^0*{decimal_at_most(limit)}$"


_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001 to 9999
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339_TIME = f"^{_DATE}{_TIME}{_OFFSET}$"
"""An RFC 3339 date-time with seconds and an offset, for a real date and time of the
years 1 to 9999 (no leap second: the consumer has none)."""

# What every address pydantic's EmailStr accepts looks like, as "Ada <ada@example.com>"
# and " ada@example.com " too: no line break, and after the last "@" a domain with a dot
# (or one of the dots IDNA maps to "."). email-validator decides the rest, which no
# regex can (IDNA, special-use domains such as .test or localhost).
EMAIL_SHAPE = "^[^\\r\\n]*@[^@\\r\\n]*[.\u3002\uff0e\uff61][^@\\r\\n]*$"
