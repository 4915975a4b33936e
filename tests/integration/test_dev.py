"""`make dev`, started as a newcomer does: twice from one data directory (its broker keeps
nothing while PostgreSQL keeps its offsets, and the second start must consume anyway, on
the same PostgreSQL port), and once more while one runs (refused in one line). Its output
stays readable: no warning a newcomer cannot act on, dead letters summed up per interval
unless --verbose. Its own embedded servers, as `make dev` runs them."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

_COUNTS = re.compile(r"^\[dev\] active users=\d+ logged events=(\d+) dead letters=\d+$")
_SUMMARY = re.compile(r"^\[dev\] dead-lettered (\d+): [a-z_]+ \d+(, [a-z_]+ \d+)*$")
_NOT_FOR_A_NEWCOMER = ("Traceback", "RuntimeDirWarning", "XDG_RUNTIME_DIR", "InitProducerId")

Process = asyncio.subprocess.Process


def dev_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "consumer.cli", "dev", "--data-dir", str(data_dir), *args]


async def run_dev_until(
    data_dir: Path,
    done: Callable[[list[str], int], bool],
    *args: str,
    meanwhile: Callable[[Process], Awaitable[None]] | None = None,
) -> tuple[list[str], int]:
    """Run `dev` until ``done(lines, logged)`` (``logged``: the last count reported), then
    run ``meanwhile`` and Ctrl-C it; its lines (stdout and stderr) and the last count."""
    process = await asyncio.create_subprocess_exec(
        *dev_command(data_dir, *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    logged = -1
    try:
        async with asyncio.timeout(90):
            while not done(lines, logged):
                line = (await process.stdout.readline()).decode().rstrip()
                assert line or process.returncode is None, lines
                lines.append(line)
                if match := _COUNTS.match(line):
                    logged = int(match[1])
        if meanwhile is not None:
            await meanwhile(process)
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        lines += rest.decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, lines
    return lines, logged


async def test_make_dev_twice_keeps_its_port_and_refuses_a_concurrent_start(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / ".dev"
    refusal: list[str] = []

    async def second_start_meanwhile(first: Process) -> None:
        second = await asyncio.create_subprocess_exec(
            *dev_command(data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 1, output
        refusal.extend(output.decode().splitlines())

    def summed_up(lines: list[str], logged: int) -> bool:
        return logged > 0 and any(_SUMMARY.match(line) for line in lines)

    first, logged = await run_dev_until(data_dir, summed_up, meanwhile=second_start_meanwhile)
    [line] = refusal
    assert line.startswith("[dev] refused: another dev (pid "), line
    assert str(data_dir) in line
    assert not any("are reset" in line for line in first)  # nothing stored yet
    assert any(line.endswith("/metrics (also /status, /healthz, /readyz)") for line in first)
    assert not [line for line in first if any(n in line for n in _NOT_FOR_A_NEWCOMER)]
    assert not [line for line in first if "record dead-lettered" in line]  # summed up instead
    [dsn] = [line for line in first if line.startswith("[dev] PostgreSQL: ")]

    # Again, at once (its sockets in TIME_WAIT), and --verbose: one line per dead letter.
    def each_one_shown(lines: list[str], later: int) -> bool:
        return later > logged and any("record dead-lettered" in line for line in lines)

    second, later = await run_dev_until(data_dir, each_one_shown, "--verbose")
    [reset] = [line for line in second if "are reset" in line]
    assert reset.startswith("[dev] a fresh broker (it keeps nothing): the offsets stored for 6 ")
    assert later > logged
    assert [line for line in second if line.startswith("[dev] PostgreSQL: ")] == [dsn]
    assert not [line for line in second if _SUMMARY.match(line)]
    assert not [line for line in second if any(n in line for n in _NOT_FOR_A_NEWCOMER)]
    assert second[-1] == "[dev] stopped."
