"""``run`` runs on uvloop where it is installed, and on asyncio's own loop where not."""

from __future__ import annotations

import asyncio
import sys

import pytest

from consumer.cli import run_loop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not a dependency on Windows")
def test_the_service_runs_on_uvloop_where_it_is_installed() -> None:
    assert run_loop(loop_module()).startswith("uvloop")


def test_without_uvloop_the_service_runs_on_asyncios_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it raises ImportError
    assert run_loop(loop_module()).startswith("asyncio")
