"""The benchmark works end to end at a small N, and both drain paths agree (not a timed test)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict

import pytest
from user_events_devtools.bench import BenchReport, report_lines
from user_events_devtools.benchservers import phase_settings, preload, scratch_databases
from user_events_devtools.drains import drain_with_baseline, drain_with_service, states_agree
from user_events_devtools.probe import run_probe
from user_events_devtools.steady import steady_load

from tests.integration.support import count_logged, fetch

NewDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture
async def new_db(server_url: str) -> AsyncIterator[NewDatabase]:
    """A migrated database by name, dropped after the test (as the bench drops its own)."""
    async with scratch_databases(server_url) as make:
        yield make


async def test_service_and_baseline_drain_the_same_data_into_the_same_state(
    bootstrap_servers: str, server_url: str, new_db: NewDatabase
) -> None:
    run_id = uuid.uuid4().hex[:8]
    settings = phase_settings(bootstrap_servers, f"bench-{run_id}")
    ends = await preload(settings, total=1500, users=300)
    assert sum(ends.values()) == 1500
    service_db = await new_db(f"bench_s_{run_id}")
    baseline_db = await new_db(f"bench_b_{run_id}")

    service = await drain_with_service(settings, service_db, ends, 1500)
    baseline = await drain_with_baseline(settings, baseline_db, ends, 1500)

    assert service.events_per_second > 0 and baseline.events_per_second > 0
    assert service.peak_rss_mb is not None and service.peak_rss_mb > 0
    # CPU over the timed drain: the `run` process's, and PostgreSQL's when it is local
    assert service.us_per_event is not None and service.us_per_event > 0
    assert baseline.us_per_event is not None and baseline.us_per_event > 0
    assert service.postgres_cpu_seconds is None or service.postgres_cpu_seconds >= 0
    assert await states_agree(service_db, baseline_db)
    outcomes = {
        r["outcome"]: r["n"]
        for r in await fetch(
            service_db, "SELECT outcome, count(*) AS n FROM user_events GROUP BY 1"
        )
    }
    assert outcomes.get("applied", 0) > 1000  # the mix is mostly applicable events


async def test_two_members_of_one_group_drain_into_the_same_state_as_one(
    bootstrap_servers: str, server_url: str, new_db: NewDatabase
) -> None:
    """`bench --members 2`: two `run` processes share the partitions; same end state."""
    run_id = uuid.uuid4().hex[:8]
    settings = phase_settings(bootstrap_servers, f"bench-{run_id}")
    ends = await preload(settings, total=1500, users=300)
    one_db = await new_db(f"bench_1_{run_id}")
    two_db = await new_db(f"bench_2_{run_id}")

    one = await drain_with_service(settings, one_db, ends, 1500)
    two = await drain_with_service(
        settings.model_copy(update={"kafka_group_id": f"bench-{run_id}-pair"}),
        two_db,
        ends,
        1500,
        members=2,
    )

    assert (one.name, two.name) == ("service", "service x2")
    assert two.cpu_seconds is not None and two.cpu_seconds > 0
    assert await states_agree(one_db, two_db)


async def test_steady_load_reports_event_and_batch_latencies(
    bootstrap_servers: str, server_url: str, new_db: NewDatabase
) -> None:
    """`bench --mode steady` at a small rate: every event is committed and measured."""
    run_id = uuid.uuid4().hex[:8]
    settings = phase_settings(bootstrap_servers, f"steady-{run_id}")
    database = await new_db(f"bench_st_{run_id}")

    steady = await steady_load(settings, database, rate=200, seconds=2.0)

    assert 350 <= steady["events"] <= 400
    stored = await fetch(database, "SELECT count(*) AS n FROM user_events")
    assert stored[0]["n"] == steady["events"] + 1  # and the warm-up event
    for key in ("p50_seconds", "p99_seconds", "batch_p50_seconds", "batch_p99_seconds"):
        assert steady[key] is not None and steady[key] > 0, key
    assert steady["p50_seconds"] <= steady["p99_seconds"]
    assert steady["us_per_event"] is not None and steady["us_per_event"] > 0


async def test_the_probe_copies_the_rows_the_service_logs_and_leaves_no_database_behind(
    bootstrap_servers: str, server_url: str, new_db: NewDatabase
) -> None:
    """`bench --mode probe` on a tiny data set: each part has a rate, the bare COPY writes
    as many log rows as the service logs for the same topic, the upsert as many users."""
    run_id = uuid.uuid4().hex[:8]
    settings = phase_settings(bootstrap_servers, f"bench-{run_id}")
    ends = await preload(settings, total=1500, users=300)
    service_db = await new_db(f"bench_s_{run_id}")
    service = await drain_with_service(settings, service_db, ends, 1500)
    logged = await count_logged(service_db)
    users = (await fetch(service_db, "SELECT count(*) AS n FROM users"))[0]["n"]
    probe = await run_probe(settings, server_url, ends, run_id, users=300)

    drain, copy, upsert = probe.parts
    assert (drain.name, copy.name, upsert.name) == ("kafka drain", "log COPY", "users upsert")
    assert all(part.events == 1500 and part.events_per_second > 0 for part in probe.parts)
    assert drain.rows == 1500
    assert copy.rows == copy.stored == logged
    assert upsert.stored == users
    report = BenchReport({"cpu": "x", "cores": 2, "python": "3"}, {}, [service], probe=probe)
    written = json.loads(json.dumps(asdict(report)))["probe"]
    assert [part["rows"] for part in written["parts"]] == [1500, logged, upsert.rows]
    assert written["in_series_events_per_second"] > 0
    lines = report_lines(report)
    assert any(line.startswith("log COPY") for line in lines)
    assert any(line.startswith("service: ") and "of the parts" in line for line in lines)
    left = await fetch(
        server_url,
        "SELECT datname FROM pg_database WHERE datname LIKE $1",
        f"bench_probe_%{run_id}",
    )
    assert left == []  # the probe's own (this test's are dropped by new_db)
