"""Check events as the consumer would, without the consumer: for publishers.

Each event is judged as the value of a structured-mode record (the whole CloudEvent as
JSON), by the rules the consumer applies to it: ``decode_structured``, then what
PostgreSQL would refuse at the write. A file holds one event (a JSON object), a JSON
array of events, or JSON Lines, one event a line; an event's own bytes are judged as
they are written, so a NaN or invalid UTF-8 in it gets the verdict the consumer gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from user_events_schemas.rejections import Rejection
from user_events_schemas.verdicts import NOT_STORABLE, decode_structured, is_storable

_JSON_WHITESPACE = " \t\n\r"


class Checked(NamedTuple):
    """One event's verdict: where it is in the input, and None or its rejection."""

    where: str
    rejection: Rejection | None


def verdict(value: bytes) -> Rejection | None:
    """None if the consumer would apply an event with this JSON, else the rejection it
    would dead-letter it with (before its business rules: an update for an unknown user,
    an email another user holds, and its size limit, which depend on the service)."""
    event = decode_structured(value)
    if isinstance(event, Rejection):
        return event
    return None if is_storable(event) else NOT_STORABLE


def check(data: bytes, name: str) -> list[Checked]:
    """Every event in ``data`` (read from ``name``) with its verdict."""
    return [Checked(where, verdict(value)) for where, value in events_in(data, name)]


def events_in(data: bytes, name: str) -> list[tuple[str, bytes]]:
    """The events of a file, each as the bytes a record's value would hold, with where
    it is: ``name`` for a lone event, ``name[i]`` for an array's, ``name:line`` for a
    JSON Lines file's."""
    try:
        text = data.decode("utf-8")
        document = json.loads(text)
    except (ValueError, RecursionError):  # not one JSON document (nor UTF-8)
        return list(_lines(data, name))
    if isinstance(document, list):
        return [(f"{name}[{i}]", item.encode()) for i, item in enumerate(_array_items(text))]
    return [(name, data)]


def _lines(data: bytes, name: str) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield f"{name}:{number}", line


def _array_items(text: str) -> Iterator[str]:
    """The text of each item of the JSON array ``text`` (known to parse), as written."""
    decoder = json.JSONDecoder()
    at = _skip_whitespace(text, text.index("[") + 1)
    while text[at] != "]":
        _, end = decoder.raw_decode(text, at)
        yield text[at:end]
        at = _skip_whitespace(text, end)
        if text[at] == ",":
            at = _skip_whitespace(text, at + 1)


def _skip_whitespace(text: str, at: int) -> int:
    while text[at] in _JSON_WHITESPACE:
        at += 1
    return at


def errors_json(rejection: Rejection) -> str:
    """The rejection's field errors as the consumer's ``dlq.errors`` header has them."""
    return json.dumps(
        [{"loc": error.loc, "type": error.type} for error in rejection.errors],
        separators=(",", ":"),
    )
