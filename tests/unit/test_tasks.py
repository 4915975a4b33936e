"""Errors of tasks nobody awaits: retrieved as they end, and asyncpg's dropped releases
told apart from crashes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from consumer.pipeline.tasks import report_unretrieved, start_task


class PoolConnectionHolder:
    """Named as asyncpg's: its ``release`` runs in a task of its own."""

    async def release(self) -> None:
        raise TimeoutError


async def fails() -> None:
    raise ValueError("boom")


async def test_a_started_task_s_error_is_retrieved_as_it_ends_and_still_raised_to_its_reaper() -> (
    None
):
    task = start_task(fails(), "failing")
    await asyncio.sleep(0)
    assert task.done()
    with pytest.raises(ValueError, match="boom"):
        task.result()


async def test_a_dropped_release_is_said_at_info_and_anything_else_goes_to_asyncio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    passed_on: list[dict[str, Any]] = []
    default = loop.default_exception_handler
    loop.default_exception_handler = passed_on.append  # type: ignore[method-assign]
    try:
        release = asyncio.ensure_future(PoolConnectionHolder().release())
        other = asyncio.ensure_future(fails())
        await asyncio.wait({release, other})
        with caplog.at_level(logging.INFO, logger="consumer.pipeline.tasks"):
            for task in (release, other):
                report_unretrieved(
                    loop,
                    {"message": "never retrieved", "exception": task.exception(), "future": task},
                )
    finally:
        loop.default_exception_handler = default  # type: ignore[method-assign]
    assert [r.getMessage() for r in caplog.records] == [
        "a PostgreSQL connection was dropped as it was released"
    ]
    assert [c["future"] for c in passed_on] == [other]
