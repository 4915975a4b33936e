"""``run`` runs on uvloop where it is installed, and on asyncio's own loop where not."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from consumer.cli import run_loop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not a dependency on Windows")
def test_the_service_runs_on_uvloop_where_it_is_installed() -> None:
    assert run_loop(loop_module()).startswith("uvloop")


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not a dependency on Windows")
def test_the_signals_have_their_default_handlers_once_the_loop_is_done() -> None:
    """As after asyncio's loop: a SIGTERM or Ctrl-C during the interpreter's exit works."""

    async def handle_signals() -> str:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: None)
        return await loop_module()

    assert run_loop(handle_signals()).startswith("uvloop")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_without_uvloop_the_service_runs_on_asyncios_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it raises ImportError
    assert run_loop(loop_module()).startswith("asyncio")
