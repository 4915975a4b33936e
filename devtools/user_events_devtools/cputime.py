"""Where the CPU goes during a bench phase: the CPU time of the `run` processes, of the
PostgreSQL backends that served them and of the embedded broker, read off /proc at the
start and at the end of the phase. Parsing and arithmetic first, pure; the reads last."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by each process (pid -> seconds) of each role; None where
    a role is not measured (PostgreSQL not local, the broker not the embedded one)."""

    run: Mapping[int, float]
    postgres: Mapping[int, float] | None
    broker: Mapping[int, float] | None


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds each role used between two samples; None where it is not measured."""

    run: float
    postgres: float | None
    broker: float | None


def cpu_seconds_from_stat(stat: str, ticks_per_second: int) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds. The fields are counted after
    the command name's closing parenthesis: the name itself may hold spaces and ')'."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def cpu_between(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds the processes alive at ``after`` used since ``before``. One that appeared
    in between counts whole; one gone by ``after`` is not counted (its CPU left with it)."""
    return sum(max(seconds - before.get(pid, 0.0), 0.0) for pid, seconds in after.items())


def usage_between(before: CpuSample, after: CpuSample) -> CpuUsage:
    def role(a: Mapping[int, float] | None, b: Mapping[int, float] | None) -> float | None:
        return None if a is None or b is None else cpu_between(a, b)

    return CpuUsage(
        cpu_between(before.run, after.run),
        role(before.postgres, after.postgres),
        role(before.broker, after.broker),
    )


def us_per_event(cpu_seconds: float | None, events: int) -> float | None:
    """Microseconds of CPU per event; None when not measured or nothing was processed."""
    if cpu_seconds is None or events <= 0:
        return None
    return cpu_seconds / events * 1e6


def cpu_report(usage: CpuUsage, events: int) -> dict[str, float | None]:
    """The CPU fields of a bench result, as DrainResult names them."""
    return {
        "cpu_seconds": usage.run,
        "us_per_event": us_per_event(usage.run, events),
        "postgres_cpu_seconds": usage.postgres,
        "postgres_us_per_event": us_per_event(usage.postgres, events),
        "broker_cpu_seconds": usage.broker,
        "broker_us_per_event": us_per_event(usage.broker, events),
    }


def is_postgres_backend(comm: str, cmdline: str, database: str) -> bool:
    """Whether a local process (its /proc comm and cmdline) is a PostgreSQL backend
    connected to ``database``. A pid from a remote server or another pid namespace names
    some other process here, or a backend of another server."""
    title = cmdline.replace("\0", " ").strip()
    program = Path(title.split(" ", 1)[0].rstrip(":")).name
    if comm.strip() != "postgres" and program != "postgres":
        return False
    # With its process title on (update_process_title, the default) a backend shows
    # "postgres: [cluster: ]user database host(port) state".
    return not title.startswith("postgres:") or f" {database} " in f"{title} "


# --- reads of /proc and pg_stat_activity ------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds a local process has used so far, all its threads; None once it is gone."""
    try:
        return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text(), CLOCK_TICKS)
    except (OSError, IndexError, ValueError):
        return None


def processes_cpu(pids: Iterable[int]) -> dict[int, float]:
    return {pid: seconds for pid in pids if (seconds := process_cpu_seconds(pid)) is not None}


# The client backends on the connection's database: the `run` processes' pools and the
# connection asking (flagged, to be left out).
_BACKENDS = """
SELECT pid, pid = pg_backend_pid() AS own, current_database() AS database
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
"""


async def postgres_backends_cpu(conn: asyncpg.Connection) -> dict[int, float] | None:
    """CPU so far of the backends serving the connection's database, but for the
    connection's own; None when the server is not local (its pids are not ours to read)."""
    rows = await conn.fetch(_BACKENDS)
    own = next(row for row in rows if row["own"])
    if not _local_backend(own["pid"], own["database"]):
        return None
    return processes_cpu(row["pid"] for row in rows if not row["own"])


def _local_backend(pid: int, database: str) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return is_postgres_backend(comm, cmdline, database)


async def sample_cpu(
    run_pids: Iterable[int], conn: asyncpg.Connection | None, broker_pid: int | None
) -> CpuSample:
    """One sample of every role: ``conn`` is the bench's own connection to the phase's
    database (left out of the count; None for a phase without one); ``broker_pid`` the
    embedded broker's, if any."""
    return CpuSample(
        processes_cpu(run_pids),
        None if conn is None else await postgres_backends_cpu(conn),
        None if broker_pid is None else processes_cpu([broker_pid]),
    )
