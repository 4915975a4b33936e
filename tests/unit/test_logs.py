"""The two log formats: the console line a person reads, the JSON object a collector reads,
and which one ``auto`` picks."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import pytest

from consumer.logs import ConsoleFormatter, JsonFormatter, console_value, formatter_for

AT = datetime(2026, 11, 25, 12, 1, 2, 345000, tzinfo=UTC).timestamp()
# What asyncpg's UniqueViolationError says: its message quotes the data.
DETAIL = "Key (lower(email))=(ada@example.com) already exists"


def record(
    message: str, level: int = logging.INFO, exc_info: Any = None, **extra: Any
) -> logging.LogRecord:
    entry = logging.LogRecord("consumer.pipeline", level, __file__, 1, message, (), exc_info)
    entry.created = AT
    entry.__dict__.update(extra)
    return entry


def console(entry: logging.LogRecord) -> str:
    formatter = ConsoleFormatter()
    formatter.converter = time.gmtime  # the tests' clock reads UTC; people see local time
    return formatter.format(entry)


def test_a_console_line_is_time_level_message_then_the_context_as_key_value() -> None:
    entry = record(
        "record dead-lettered", logging.WARNING, partition=2, offset=164, reason="invalid"
    )
    assert (
        console(entry)
        == "12:01:02 WARNING record dead-lettered partition=2 offset=164 reason=invalid"
    )


def test_console_levels_are_padded_so_that_messages_line_up() -> None:
    info = console(record("consuming"))
    warning = console(record("consuming", logging.WARNING))
    assert info == "12:01:02 INFO    consuming"
    assert info.index("consuming") == warning.index("consuming")


def test_console_quotes_a_value_only_when_it_would_read_ambiguously() -> None:
    entry = record(
        "transient failure, retrying",
        error="data.email: value_error",
        operation="write_batch",
        note='say "hi"',
        empty="",
        formula="a=b",
    )
    assert console(entry).endswith(
        ' error="data.email: value_error" operation=write_batch note="say \\"hi\\""'
        ' empty="" formula="a=b"'
    )


def test_console_shows_numbers_flags_and_structures_as_compact_json() -> None:
    assert console_value(0.25) == "0.25"
    assert console_value(True) == "true"
    assert console_value(None) == "null"
    assert console_value({"applied": 3, "stale": 0}) == '{"applied":3,"stale":0}'
    assert console_value(["a", "b c"]) == '["a","b c"]'
    assert console_value("Zoë") == "Zoë"
    assert console_value("line\nbreak") == '"line\\nbreak"'  # one record, one line


def raised() -> Any:
    try:
        raise ValueError(DETAIL)
    except ValueError:
        return sys.exc_info()


def test_console_shows_an_exception_by_type_and_frames_never_by_its_message() -> None:
    text = console(record("the consumer stopped", logging.ERROR, exc_info=raised(), batch=7))
    first, *frames = text.splitlines()
    assert first == "12:01:02 ERROR   the consumer stopped batch=7 exception=ValueError"
    assert frames and frames[0].startswith("  File ") and "in raised" in frames[0]
    assert "ada@example.com" not in text and "already exists" not in text, text


def test_json_carries_the_same_context_and_the_exception_without_its_message() -> None:
    entry = record("record dead-lettered", logging.WARNING, exc_info=raised(), partition=2)
    logged = json.loads(JsonFormatter().format(entry))
    assert logged.pop("traceback").startswith("  File ")
    assert logged == {
        "time": "2026-11-25T12:01:02.345+00:00",
        "level": "WARNING",
        "logger": "consumer.pipeline",
        "message": "record dead-lettered",
        "partition": 2,
        "exception": "ValueError",
    }


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real pseudo-terminal's end, as stderr is when a person runs the command."""
    leader, follower = os.openpty()
    with open(follower, "w") as stream:
        try:
            yield stream
        finally:
            os.close(leader)


def test_auto_is_console_on_a_terminal_and_json_otherwise(terminal: TextIO) -> None:
    assert isinstance(formatter_for("auto", terminal), ConsoleFormatter)
    assert isinstance(formatter_for("auto", io.StringIO()), JsonFormatter)


def test_an_explicit_format_wins_over_what_stderr_is(terminal: TextIO) -> None:
    assert isinstance(formatter_for("json", terminal), JsonFormatter)
    assert isinstance(formatter_for("console", io.StringIO()), ConsoleFormatter)
