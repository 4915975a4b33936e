"""Errors of tasks nobody awaits: retrieved as they end, and asyncpg's dropped releases
and aiokafka's abandoned commits told apart from crashes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import CorrelationIdError

from consumer.pipeline.tasks import report_unretrieved, start_task


class PoolConnectionHolder:
    """Named as asyncpg's: its ``release`` runs in a task of its own."""

    async def release(self) -> None:
        raise TimeoutError


class GroupCoordinator:
    """Named as aiokafka's: its ``_do_commit_offsets`` runs in a task of its own."""

    async def _do_commit_offsets(self) -> None:
        raise CorrelationIdError("Correlation ids do not match: sent 13, recv 15")


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


async def test_a_dropped_release_or_commit_is_said_at_info_and_anything_else_goes_to_asyncio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    passed_on: list[dict[str, Any]] = []
    default = loop.default_exception_handler
    loop.default_exception_handler = passed_on.append  # type: ignore[method-assign]
    try:
        release = asyncio.ensure_future(PoolConnectionHolder().release())
        commit = asyncio.ensure_future(GroupCoordinator()._do_commit_offsets())
        other = asyncio.ensure_future(fails())
        await asyncio.wait({release, commit, other})
        with caplog.at_level(logging.INFO, logger="consumer.pipeline.tasks"):
            for task in (release, commit, other):
                report_unretrieved(
                    loop,
                    {"message": "never retrieved", "exception": task.exception(), "future": task},
                )
    finally:
        loop.default_exception_handler = default  # type: ignore[method-assign]
    assert [r.getMessage() for r in caplog.records] == [
        "a PostgreSQL connection was dropped as it was released",
        "a Kafka offset commit given up on failed later",
    ]
    assert [c["future"] for c in passed_on] == [other]
