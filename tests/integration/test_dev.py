"""`make dev`, started twice from one data directory, as a newcomer does: its broker keeps
nothing while PostgreSQL keeps its offsets, and the second start must consume anyway.
Its own embedded servers, as `make dev` runs them."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

_COUNTS = re.compile(r"^\[dev\] active users=\d+ logged events=(\d+) dead letters=\d+$")


async def dev_until_logged(data_dir: Path, more_than: int) -> tuple[list[str], int]:
    """Run `dev` until it reports more than ``more_than`` logged events, then Ctrl-C it;
    its lines and the last count."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    lines: list[str] = []
    logged = -1
    try:
        async with asyncio.timeout(90):
            while logged <= more_than:
                line = (await process.stdout.readline()).decode().rstrip()
                assert line or process.returncode is None, lines
                lines.append(line)
                if match := _COUNTS.match(line):
                    logged = int(match[1])
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        lines += rest.decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, lines
    return lines, logged


async def test_a_second_make_dev_from_the_same_data_directory_consumes_the_new_topic(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / ".dev"
    first, logged = await dev_until_logged(data_dir, 0)
    assert not any("are reset" in line for line in first)  # nothing stored yet
    second, later = await dev_until_logged(data_dir, logged)
    [reset] = [line for line in second if "are reset" in line]
    assert reset.startswith("[dev] a fresh broker (it keeps nothing): the offsets stored for 6 ")
    assert later > logged
    assert second[-1] == "[dev] stopped."
