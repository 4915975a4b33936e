"""Logs on stderr through stdlib logging: one JSON object a line for machines, or one
short line for a person (``LOG_FORMAT``).

Both formats show the message and the context the code passes with ``extra=``, nothing
else: the code passes positions, reasons and error kinds, never event data, emails or
names. An exception is shown by its type and its frames, never its message."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "console", "json"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is context.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def context(record: logging.LogRecord) -> dict[str, Any]:
    """What the code passed with ``extra=``, in the order it passed it."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def failure(record: logging.LogRecord) -> tuple[str, str] | None:
    """The logged exception's type name and frames, if there is one. Not its message: an
    exception's message can quote data (asyncpg's detail names the conflicting key)."""
    if record.exc_info and record.exc_info[0] is not None:
        return record.exc_info[0].__name__, "".join(traceback.format_tb(record.exc_info[2]))
    return None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and its context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context(record),
        }
        caught = failure(record)
        if caught is not None:
            entry["exception"], entry["traceback"] = caught
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """Formats a record as one short line: local time, level, message, then its context as
    ``key=value``; an exception adds its type, and its frames on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"{key}={console_value(value)}" for key, value in context(record).items()]
        when = self.formatTime(record, "%H:%M:%S")
        line = " ".join([when, f"{record.levelname:<7}", record.getMessage(), *fields])
        caught = failure(record)
        if caught is not None:
            name, frames = caught
            line = f"{line} exception={name}\n{frames.rstrip()}"
        return line


def console_value(value: Any) -> str:
    """A value as a person reads it after ``key=``: a plain word bare, a string with spaces,
    quotes or ``=`` in double quotes (escaped as JSON), anything else as compact JSON."""
    if not isinstance(value, str):
        return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
    if value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def formatter_for(log_format: LogFormat, stream: TextIO) -> logging.Formatter:
    """The formatter ``log_format`` names; ``auto`` is console when ``stream`` is a
    terminal (a person is reading), else JSON (a collector is)."""
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    return ConsoleFormatter() if log_format == "console" else JsonFormatter()


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every log record at ``level`` or above to stderr, formatted as ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every connection failure at ERROR with a traceback; our own retry
    # logs say the same once per attempt.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
