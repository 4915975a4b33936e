"""What a person sees of the installed command: its version, and its logs in the format
LOG_FORMAT asks for (by default: readable on a terminal, JSON through a pipe or a file)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess

import pytest

from consumer import __version__
from tests.deploy.tools import venv_tool

pytestmark = pytest.mark.integration

CONSOLE_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S")


def command(*args: str, **env: str) -> tuple[list[str], dict[str, str]]:
    """The installed console script, with a clean environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return [venv_tool("user-events-consumer"), *args], {**base, **env}


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stderr on a real pseudo-terminal, as when a person types the command;
    the exit code and what the terminal showed."""
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(timeout=60)
    finally:
        os.close(leader)
    return code, shown.decode().replace("\r\n", "\n")


def run_through_a_pipe(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


async def test_version_prints_the_command_name_and_version_and_exits_0() -> None:
    # A setting that does not parse: --version answers without reading the configuration.
    args, env = command("--version", KAFKA_MAX_POLL_RECORDS="many")
    done = await asyncio.to_thread(
        subprocess.run, args, env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"user-events-consumer {__version__}\n",
        "",
    )


@pytest.mark.parametrize(
    ("log_format", "on_a_terminal", "shown_as"),
    [
        ("auto", True, "console"),
        ("auto", False, "json"),
        ("console", False, "console"),
        ("json", True, "json"),
    ],
)
async def test_log_format_chooses_readable_lines_or_json_whatever_stderr_is(
    database: str, log_format: str, on_a_terminal: bool, shown_as: str
) -> None:
    args, env = command("migrate", DATABASE_URL=database, LOG_FORMAT=log_format)
    runner = run_on_a_terminal if on_a_terminal else run_through_a_pipe
    code, shown = await asyncio.to_thread(runner, args, env)
    assert code == 0, shown
    lines = shown.splitlines()
    applied = [line for line in lines if "applied migration" in line]
    assert applied, shown
    if shown_as == "json":
        entries = [json.loads(line) for line in lines]
        first = next(e for e in entries if e["message"] == "applied migration")
        assert first["level"] == "INFO" and first["version"] == 1
    else:
        assert all(CONSOLE_LINE.match(line) for line in lines), shown
        assert re.fullmatch(
            r"\d\d:\d\d:\d\d INFO    applied migration version=1 migration=\S+", applied[0]
        ), applied[0]
