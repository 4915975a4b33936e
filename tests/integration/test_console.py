"""What a person sees of the installed command."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from consumer import __version__
from tests.deploy.tools import venv_tool

pytestmark = pytest.mark.integration


def command(*args: str, **env: str) -> tuple[list[str], dict[str, str]]:
    """The installed console script, with a clean environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return [venv_tool("user-events-consumer"), *args], {**base, **env}


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
