"""The console script: parse, configure, call. No business logic lives here."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine, Sequence
from importlib.metadata import entry_points
from typing import Any

from consumer import __version__, collector
from consumer.app import run_service
from consumer.edges import metrics
from consumer.edges.errors import retrying
from consumer.edges.migrate import Migration, apply_migrations, shipped_migrations
from consumer.edges.store import Store
from consumer.logs import configure_logging
from consumer.settings import Settings, load_settings
from consumer.tools import dlq, erase, event, prune, rebuild, replay, status

COMMANDS_GROUP = "user_events_consumer.commands"
"""The entry-point group through which another distribution adds commands: each entry point
names a function that adds its subparser, ``add_parser(commands)``, as the tools here do."""

# The development tools' commands (user-events-devtools, in devtools/): where they are not
# installed, as in the runtime image, each is a stand-in that says how to install them.
DEVTOOLS_COMMANDS = {
    "dev": "run everything locally on embedded servers with demo events",
    "bench": "measure throughput, latency and memory on real servers",
    "compare": "drain with two versions of the code, alternating, and compare",
}
DEVTOOLS_INSTALL = "pip install ./devtools (from a checkout of the repository)"
EXIT_NOT_INSTALLED = 2


def _cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    collector.tune_for_batches(
        max_poll_records=settings.kafka_max_poll_records,
        concurrent_batches=settings.db_concurrent_batches,
    )
    return run_loop(run_service(settings, migrate=not args.no_migrate))


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run the service's ``main`` on uvloop where it is installed (a dependency on every
    platform but Windows), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    try:
        return uvloop.run(main)
    finally:
        # asyncio's loop gives the signals their default handlers back when it closes;
        # uvloop leaves its own, on a closed loop, so that a SIGTERM or a Ctrl-C during
        # the interpreter's exit would do nothing.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    print(migrate_report(asyncio.run(_migrate(settings)), shipped_migrations()))
    return 0


async def _migrate(settings: Settings) -> list[Migration]:
    """Apply what is missing, waiting out an outage as ``run`` does; what was applied."""
    stopping = asyncio.Event()
    async for attempt in retrying(settings, "db_connect", stopping, metrics.count_retry):
        with attempt:
            store = await Store.open(settings)
    applied: list[Migration] = []
    try:
        async for attempt in retrying(settings, "migrate", stopping, metrics.count_retry):
            with attempt:
                async with store.pool.acquire() as conn:
                    applied = await apply_migrations(conn)
    finally:
        await store.close()
    return applied


def migrate_report(applied: Sequence[Migration], shipped: Sequence[Migration]) -> str:
    """What ``migrate`` did, in one line: the migrations applied, and the version the
    schema is at (named as the migration files are, such as 0006)."""
    latest = f"up to date at {max(m.version for m in shipped):04d}" if shipped else "up to date"
    if not applied:
        return f"nothing to apply: {latest}"
    return f"applied {', '.join(f'{m.version:04d}_{m.name}' for m in applied)}: {latest}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="user-events-consumer",
        description="Consume CloudEvents user events from Kafka into PostgreSQL, exactly once.",
        epilog="Configuration comes from the environment; see the README.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the consumer service",
        description="Run the consumer until SIGTERM or SIGINT; applies migrations first.",
        epilog="Exit codes: 0 stopped (SIGTERM or SIGINT, also while starting); 1 stopped on "
        "an unexpected error; 2 could not start (a bad setting, PostgreSQL refusing the "
        "connection). See docs/operations.md.",
    )
    run.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    run.set_defaults(handler=_cmd_run)

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the tables",
        description="Apply the shipped SQL migrations that are missing, under an advisory lock, "
        "waiting for PostgreSQL as `run` does. Prints the migrations applied and the version "
        "the schema is at, such as 'nothing to apply: up to date at 0006'.",
        epilog="Exit codes: 0 migrated (or nothing to apply); 1 failed (the error is logged); "
        "2 a bad setting. See docs/operations.md.",
    )
    migrate.set_defaults(handler=_cmd_migrate)

    for tool in (replay, dlq, rebuild, erase, prune, status, event):
        tool.add_parser(commands)
    add_installed_commands(commands)
    return parser


def add_installed_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """The commands that installed distributions register in ``COMMANDS_GROUP``, and a
    stand-in for each development tool that none registers."""
    installed: set[str] = set()
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        if entry_point.name in commands.choices:
            continue  # the consumer's own command keeps its name
        installed.add(entry_point.name)
        try:
            add_parser = entry_point.load()
        except Exception as exc:  # a broken install must not stop run, migrate or the tools
            why = f"could not be loaded ({type(exc).__name__}); reinstall: {DEVTOOLS_INSTALL}"
            add_not_installed(commands, entry_point.name, "a development tool", why)
            continue
        add_parser(commands)
    for name, summary in DEVTOOLS_COMMANDS.items():
        if name not in installed:
            add_not_installed(commands, name, summary)


def add_not_installed(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    why: str = f"needs the development tools: {DEVTOOLS_INSTALL}",
) -> None:
    """``name``, which answers whatever follows it (``--help`` too) with one line on how to
    install the development tools, and exit 2, before anything is started."""
    stand_in = commands.add_parser(
        name, help=f"{summary} (needs the development tools)", add_help=False, prefix_chars="\0"
    )
    # No prefix character it can meet, so that `dev --data-dir x` is not a usage error:
    # every argument after the command lands here, ignored.
    stand_in.add_argument("ignored", nargs=argparse.REMAINDER)
    stand_in.set_defaults(handler=_cmd_not_installed, why=why)


def _cmd_not_installed(args: argparse.Namespace) -> int:
    print(f"user-events-consumer: {args.command} {args.why}", file=sys.stderr)
    return EXIT_NOT_INSTALLED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
