"""The one way every tool command runs: parse, configure, run, print, and an exit code.

Whatever ends a tool ends it the same way: one line on stderr, never a traceback, never
a secret (a failure is named by its type, not its message), and one of these codes:

    0  done
    1  done with refusals (``dlq redrive``), a lag over the limit (``status``), an event
       not found (``event``), or failed on the way (PostgreSQL or Kafka answered an
       error, an unexpected error)
    2  could not run: a bad argument or setting, PostgreSQL or Kafka unreachable, a
       missing topic, another redrive running, a schema behind on a dry run
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import ssl
from collections.abc import Callable, Coroutine, Mapping
from enum import IntEnum
from typing import Any, Protocol, TypeVar

import asyncpg
from aiokafka.errors import KafkaError

from consumer.edges.errors import DatabaseMisconfigured, DatabaseUnreachable, is_transient
from consumer.logs import configure_logging
from consumer.settings import Settings, load_settings
from consumer.tools.errors import BadArgument, ToolError, fail

log = logging.getLogger(__name__)

Request = TypeVar("Request")


class Exit(IntEnum):
    OK = 0
    INCOMPLETE = 1
    CANNOT_RUN = 2
    INTERRUPTED = 130


class Report(Protocol):
    """What a tool returns: printed as text or JSON, and whether all of it was done."""

    @property
    def complete(self) -> bool:
        """False when something was refused: the exit code is then 1."""
        ...

    def to_json(self) -> Mapping[str, Any]: ...

    def render(self) -> str: ...


def add_tool(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    request_of: Callable[[argparse.Namespace], Request],
    work: Callable[[Settings, Request], Coroutine[Any, Any, Report]],
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    """Register a tool command that runs through ``run_tool``, with the ``--json`` every
    tool has; the tool adds its own arguments to the parser returned."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=functools.partial(run_tool, request_of=request_of, work=work))
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (default: text)"
    )
    return parser


def run_tool(
    args: argparse.Namespace,
    request_of: Callable[[argparse.Namespace], Request],
    work: Callable[[Settings, Request], Coroutine[Any, Any, Report]],
) -> int:
    """Run one tool command: ``request_of`` checks the arguments (``BadArgument``), then
    ``work`` runs with the settings; its report goes to stdout (``--json``: as JSON)."""
    try:
        request = request_of(args)
    except BadArgument as exc:
        return fail(str(exc))
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        # A tool says why it failed in one line; aiokafka would log each failed
        # connection attempt on top of it.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        report = asyncio.run(work(settings, request))
    except KeyboardInterrupt:
        return fail("interrupted", Exit.INTERRUPTED)
    except Exception as exc:
        log.debug("the tool failed", exc_info=exc)
        return fail(*explain(exc, settings))
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return Exit.OK if report.complete else Exit.INCOMPLETE


def explain(exc: Exception, settings: Settings) -> tuple[str, Exit]:
    """The line and the exit code for what ended a tool."""
    name = str(exc) if isinstance(exc, DatabaseUnreachable) else type(exc).__name__
    kafka = f"Kafka at {settings.kafka_bootstrap_servers}"
    if isinstance(exc, ToolError):
        return str(exc), Exit.CANNOT_RUN
    if isinstance(exc, DatabaseMisconfigured):
        return f"PostgreSQL refused the connection: {exc} (check DATABASE_URL)", Exit.CANNOT_RUN
    if isinstance(exc, ssl.SSLError):
        # Not transient (waiting does not fix a certificate), but a setting to correct.
        return f"TLS failed ({name}): check the TLS settings (docs/security.md)", Exit.CANNOT_RUN
    if isinstance(exc, KafkaError):
        if is_transient(exc):
            return f"cannot reach {kafka} ({name})", Exit.CANNOT_RUN
        return f"{kafka} answered {name}", Exit.INCOMPLETE
    if is_transient(exc):
        # The tools' only connections besides Kafka's (whose client wraps its own
        # failures in KafkaError) are PostgreSQL's.
        return f"cannot reach PostgreSQL: {name}", Exit.CANNOT_RUN
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL answered {name}", Exit.INCOMPLETE
    return f"failed: {name} (LOG_LEVEL=DEBUG logs the traceback)", Exit.INCOMPLETE
