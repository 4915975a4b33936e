"""`user-events-consumer dev`: the whole pipeline on embedded servers, with demo traffic."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import random
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import asyncpg

from consumer.app import run_service, stop_on_signals
from consumer.edges import metrics
from consumer.edges.kafka import ensure_topics, start_producer
from consumer.logs import LogFormat, configure_logging
from consumer.settings import Settings, load_settings
from user_events_devtools.demo import demo_messages
from user_events_devtools.devenv import EmbeddedBroker, EmbeddedPostgres, free_port

POSTGRES_PORT = 55432
BROKER_PORT = 19092
HTTP_PORT = 8080
REPORT_SECONDS = 5.0
EXIT_REFUSED = 1


def _port_or_free(preferred: int) -> int:
    """``preferred`` unless something listens there, else a free port. The probe sets
    ``SO_REUSEADDR`` as the servers do: a port whose last connections linger in TIME_WAIT
    (a dev stopped a moment ago) is free to them, and so must it be here, or each restart
    would move to a random port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _previous_port(postgres_dir: Path) -> int | None:
    """The port PostgreSQL had in ``postgres_dir`` last time (its postgresql.auto.conf):
    kept while it is free, so that an exported DATABASE_URL keeps working."""
    conf = postgres_dir / "postgresql.auto.conf"
    with contextlib.suppress(OSError):
        if match := re.search(r"^port = (\d+)$", conf.read_text(), re.MULTILINE):
            return int(match[1])
    return None


def _lock(data_dir: Path) -> IO[str] | str:
    """The lock of ``data_dir`` (held while the file stays open, whose content is our pid),
    or the one line that refuses a second dev on it while another runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "dev.pid"
    file = open(path, "a+")  # noqa: SIM115 (held open for the whole run)
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        holder = file.read().strip() or "?"
        file.close()
        return (
            f"[dev] refused: another dev (pid {holder}) runs on {data_dir.resolve()}; "
            "stop it (Ctrl-C there), or give this one another --data-dir"
        )
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def _running_postgres(postgres_dir: Path) -> int | None:
    """The pid of a PostgreSQL server that still runs in ``postgres_dir`` (a dev killed
    without its Ctrl-C leaves its server behind), from its postmaster.pid."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((postgres_dir / "postmaster.pid").read_text().splitlines()[0])
        try:
            os.kill(pid, 0)
        except PermissionError:
            return pid
        except ProcessLookupError:
            return None
        return pid
    return None


class DeadLetterSummary(logging.Filter):
    """Holds back the service's one WARNING per dead letter ("record dead-lettered") and
    counts them by reason instead: ``dev`` prints one line per interval. Production keeps
    the line per record; ``dev --verbose`` too."""

    MESSAGE = "record dead-lettered"

    def __init__(self) -> None:
        super().__init__()
        self.reasons: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE:
            return True
        self.reasons[str(getattr(record, "reason", "unknown"))] += 1
        return False

    def take(self) -> str | None:
        """The summary line of what was counted since the last one; None if nothing was."""
        counts, self.reasons = self.reasons, Counter()
        if not counts:
            return None
        by_reason = ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
        return f"[dev] dead-lettered {counts.total()}: {by_reason}"


async def _publish(settings: Settings, rate: float, stopping: asyncio.Event) -> None:
    producer = await start_producer(settings)
    try:
        for key, value, headers in demo_messages(random.Random(7)):
            if stopping.is_set():
                return
            await producer.send(settings.kafka_topic, value=value, key=key, headers=headers)
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


async def _report(
    settings: Settings, stopping: asyncio.Event, summary: DeadLetterSummary | None
) -> None:
    dsn = settings.database_url.get_secret_value()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), REPORT_SECONDS)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(dsn)
            try:
                users = await conn.fetchval("SELECT count(*) FROM users WHERE status = 'active'")
                events = await conn.fetchval("SELECT count(*) FROM user_events")
            finally:
                await conn.close()
            dead = sum(
                s.value
                for m in metrics.DEAD_LETTERS.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )
            print(
                f"[dev] active users={users} logged events={events} dead letters={int(dead)}",
                flush=True,
            )
        if summary is not None and (line := summary.take()):
            print(line, flush=True)


async def _forget_offsets(settings: Settings) -> int:
    """The embedded broker keeps nothing, but PostgreSQL in the data directory does: its
    stored offsets belong to the topic of an earlier run, and would lie past the end of
    the new one. Forget the dev group's; returns how many there were."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        if await conn.fetchval("SELECT to_regclass('consumer_offsets')") is None:
            return 0
        status = await conn.execute(
            "DELETE FROM consumer_offsets WHERE group_id = $1", settings.kafka_group_id
        )
        return int(status.split()[-1])
    finally:
        await conn.close()


async def run_dev(data_dir: Path, rate: float, *, verbose: bool | None = None) -> int:
    """Start embedded PostgreSQL and broker, the consumer and a demo publisher; Ctrl-C stops.

    Refuses (one line on stderr, exit 1) while another dev runs on ``data_dir``. Dead
    letters are summarised per report unless ``verbose`` (None: as the logging level
    says, below WARNING being verbose)."""
    if verbose is None:
        verbose = logging.getLogger().getEffectiveLevel() < logging.WARNING
    lock = _lock(data_dir)
    if isinstance(lock, str):
        print(lock, file=sys.stderr, flush=True)
        return EXIT_REFUSED
    with lock, contextlib.ExitStack() as cleanup:
        postgres_dir = data_dir / "postgres"
        if (pid := _running_postgres(postgres_dir)) is not None:
            print(
                f"[dev] refused: a PostgreSQL server (pid {pid}) still runs in {postgres_dir}, "
                f"left by an earlier dev; stop it: kill {pid}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_REFUSED
        port = _port_or_free(_previous_port(postgres_dir) or POSTGRES_PORT)
        postgres = EmbeddedPostgres(postgres_dir, port=port)
        try:
            postgres.start()
        except subprocess.CalledProcessError as exc:
            why = exc.stderr.decode(errors="replace").strip().splitlines() if exc.stderr else []
            print(
                f"[dev] PostgreSQL did not start ({why[-1] if why else 'no reason given'}); "
                f"see {postgres_dir / 'server.log'}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_REFUSED
        cleanup.callback(print, "[dev] stopped.", flush=True)
        cleanup.callback(postgres.stop)
        broker = EmbeddedBroker(
            port=_port_or_free(BROKER_PORT), log_path=data_dir / "broker.log"
        ).start()
        cleanup.callback(broker.stop)
        summary = None if verbose else DeadLetterSummary()
        if summary is not None:
            dead_letter_log = logging.getLogger("consumer.pipeline.aftercommit")
            dead_letter_log.addFilter(summary)
            cleanup.callback(dead_letter_log.removeFilter, summary)
        return await _serve(data_dir, postgres, broker, rate, summary)


async def _serve(
    data_dir: Path,
    postgres: EmbeddedPostgres,
    broker: EmbeddedBroker,
    rate: float,
    summary: DeadLetterSummary | None,
) -> int:
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=postgres.url,
        http_port=_port_or_free(HTTP_PORT),
        http_host="127.0.0.1",
        # The embedded broker has no InitProducerId: asking would log an error and a
        # warning at each start, for every producer.
        kafka_enable_idempotence="false",
    )
    await ensure_topics(settings, {settings.kafka_topic: 6, settings.kafka_dlq_topic: 1})
    if reset := await _forget_offsets(settings):
        print(
            f"[dev] a fresh broker (it keeps nothing): the offsets stored for "
            f"{reset} partitions in {data_dir} are reset, so the new topic is read",
            flush=True,
        )
    dead_letters = (
        "each dead letter is logged"
        if summary is None
        else f"dead letters summed up every {REPORT_SECONDS:g}s (--verbose: each one)"
    )
    print(
        f"[dev] PostgreSQL: {postgres.url}\n"
        f"[dev] Kafka:      {broker.bootstrap_servers} (topics {settings.kafka_topic}, "
        f"{settings.kafka_dlq_topic})\n"
        f"[dev] Metrics:    http://127.0.0.1:{settings.http_port}/metrics "
        f"(also /status, /healthz, /readyz)\n"
        f"[dev] Try:        psql {postgres.url} -c 'SELECT * FROM users LIMIT 5'\n"
        f"[dev] Output:     counts every {REPORT_SECONDS:g}s, {dead_letters}\n"
        "[dev] Ctrl-C stops everything.",
        flush=True,
    )
    stopping = asyncio.Event()
    stop_on_signals(stopping)
    service = asyncio.create_task(run_service(settings, stopping=stopping))
    helpers = [
        asyncio.create_task(_publish(settings, rate, stopping)),
        asyncio.create_task(_report(settings, stopping, summary)),
    ]
    code = await service
    stopping.set()
    await asyncio.gather(*helpers, return_exceptions=True)
    if summary is not None and (line := summary.take()):
        print(line, flush=True)
    return code


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="run everything locally on embedded servers with demo events",
        description="Start an embedded Kafka-compatible broker and PostgreSQL, the consumer, "
        "and a publisher of demo events (valid, duplicate and poison). Ctrl-C stops.",
        epilog="Exit codes: 0 stopped (Ctrl-C); 1 failed; 2 could not start (a bad setting). "
        "See the README.",
    )
    dev.add_argument("--data-dir", default=".dev", help="where PostgreSQL keeps its data")
    dev.add_argument("--rate", type=float, default=50.0, help="demo events per second")
    dev.add_argument("--verbose", action="store_true", help="show all logs, not only warnings")
    dev.set_defaults(handler=_cmd_dev)


def _cmd_dev(args: argparse.Namespace) -> int:
    settings = load_settings()
    # Someone watches dev: readable lines, even through a pipe, unless JSON is asked for.
    log_format: LogFormat = "json" if settings.log_format == "json" else "console"
    configure_logging(settings.log_level if args.verbose else "WARNING", log_format)
    return asyncio.run(run_dev(Path(args.data_dir), args.rate, verbose=args.verbose))
