"""Where the bench's CPU goes: /proc arithmetic, the report's columns and notes, and the
profile's place, without I/O."""

from __future__ import annotations

import gc
import sysconfig
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from user_events_devtools import bench, profiler
from user_events_devtools.bench import (
    BenchReport,
    _machine,
    report_lines,
    results_folder_problem,
    steady_row,
)
from user_events_devtools.cputime import (
    CpuSample,
    CpuUsage,
    cpu_between,
    cpu_report,
    cpu_seconds_from_stat,
    is_postgres_backend,
    us_per_event,
    usage_between,
)
from user_events_devtools.drains import DrainResult
from user_events_devtools.interpreter import python_build
from user_events_devtools.profiler import ProfileRequest, Profiling, profile_path
from user_events_devtools.serviceprocess import gc_collections

from consumer import cli

# /proc/<pid>/stat: utime is field 14 and stime field 15 (counted from 1, the pid).
STAT = (
    "4242 (postgres) S 2252 2252 2252 0 -1 4194560 3000 0 0 0 {utime} {stime} 0 0 20 0 1 0 "
    "91234 231211008 4096 18446744073709551615 1 1 0 0 0 0 4194304 19935232 536891015 0 0 0 "
    "17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
)


def test_cpu_seconds_of_a_stat_line_are_user_plus_system_ticks() -> None:
    assert cpu_seconds_from_stat(STAT.format(utime=250, stime=50), 100) == 3.0


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    line = STAT.format(utime=7, stime=3).replace("(postgres)", "(tricky) name (x) 1 2)")

    assert cpu_seconds_from_stat(line, 100) == pytest.approx(0.1)


def test_a_process_that_appeared_between_samples_counts_whole_and_one_gone_not_at_all() -> None:
    before = {1: 1.0, 2: 5.0}
    after = {1: 1.5, 3: 0.25}  # 2 exited, 3 connected after the first sample

    assert cpu_between(before, after) == 0.75


def test_a_reused_pid_with_less_cpu_than_before_counts_nothing_rather_than_negative() -> None:
    assert cpu_between({1: 9.0}, {1: 2.0}) == 0.0


def test_a_role_not_measured_in_either_sample_is_none_not_zero() -> None:
    before = CpuSample({10: 1.0}, None, {20: 1.0})
    after = CpuSample({10: 3.0}, None, {20: 1.5})

    assert usage_between(before, after) == CpuUsage(2.0, None, 0.5)


def test_microseconds_per_event() -> None:
    assert us_per_event(1.15, 50_000) == pytest.approx(23.0)
    assert us_per_event(None, 50_000) is None
    assert us_per_event(1.0, 0) is None


def test_the_cpu_fields_of_a_steady_load_are_named_as_a_drains() -> None:
    fields = cpu_report(CpuUsage(2.0, 1.0, None), 100_000)
    drain = DrainResult("service", 100_000, 4.0, 25_000.0, None, None, None, 2.0, 1.0, None)

    assert fields == {name: getattr(drain, name) for name in fields}
    assert fields["us_per_event"] == pytest.approx(20.0)
    assert fields["postgres_us_per_event"] == pytest.approx(10.0)
    assert fields["broker_us_per_event"] is None


@pytest.mark.parametrize(
    ("comm", "cmdline", "local"),
    [
        ("postgres\n", "postgres: 15/main: postgres bench_service_ab 127.0.0.1(5432) idle", True),
        ("postgres\n", "postgres: postgres bench_service_ab 127.0.0.1(5432) idle", True),
        # another database's backend at that pid: the server the bench talks to is elsewhere
        ("postgres\n", "postgres: 15/main: postgres other 127.0.0.1(5432) idle", False),
        ("postgres\n", "postgres: 15/main: postgres bench_service_abc 127.0.0.1(1) idle", False),
        # the process title off (update_process_title): the postmaster's arguments
        ("postgres\n", "/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/pg\0", True),
        ("python3\n", "python3\0-m\0consumer.cli\0run\0", False),
    ],
)
def test_a_local_pid_counts_only_when_it_is_a_postgres_backend_of_the_database(
    comm: str, cmdline: str, local: bool
) -> None:
    assert is_postgres_backend(comm, cmdline, "bench_service_ab") is local


def _report(results: list[DrainResult], steady: dict[str, object] | None = None) -> BenchReport:
    return BenchReport({"cpu": "x", "cores": 2, "python": "3.11"}, {}, results, steady=steady)


def test_each_row_shows_events_per_second_and_cpu_per_event_of_run_postgres_and_broker() -> None:
    service = DrainResult("service", 50_000, 2.0, 25_000.0, 0.2, 0.5, 120.0, 1.15, 0.72, 0.06)

    lines = report_lines(_report([service]))

    header = next(line for line in lines if line.startswith("path"))
    assert header.split()[-6:] == ["run", "us/ev", "PG", "us/ev", "broker", "us/ev"]
    row = next(line for line in lines if line.startswith("service"))
    assert row.split()[3] == "25,000"
    assert row.split()[-3:] == ["23.0", "14.4", "1.2"]
    assert not any("not measured" in line for line in lines)


def test_a_server_that_is_not_local_is_said_so_and_shown_as_a_dash() -> None:
    baseline = DrainResult("baseline", 1_000, 2.0, 500.0, cpu_seconds=0.1)

    lines = report_lines(_report([baseline]))

    row = next(line for line in lines if line.startswith("baseline"))
    assert row.split()[-3:] == ["100.0", "-", "-"]
    assert "PostgreSQL is not local: its CPU is not measured" in lines
    assert "the broker is not the embedded one: its CPU is not measured" in lines


def test_the_steady_load_is_a_row_with_its_rate_and_batch_latencies() -> None:
    steady: dict[str, object] = {
        "rate_per_second": 1000,
        "seconds": 5.0,
        "events": 5000,
        "p50_seconds": 0.03,
        "p99_seconds": 0.07,
        "batch_p50_seconds": 0.008,
        "batch_p99_seconds": 0.024,
        **cpu_report(CpuUsage(0.5, 0.4, 0.3), 5000),
    }

    row = steady_row(steady)

    assert (row.name, row.events_per_second, row.batch_p99_seconds) == ("steady", 1000.0, 0.024)
    assert (row.us_per_event, row.postgres_us_per_event) == pytest.approx((100.0, 80.0))
    assert any(line.startswith("steady ") for line in report_lines(_report([], steady)))


def test_profiles_go_beside_the_results_file_named_after_it() -> None:
    results = Path("out/bench-results.json")

    assert profile_path(results, "service", "speedscope") == Path(
        "out/bench-results-profile-service.speedscope.json"
    )
    assert ProfileRequest(results, "flamegraph").path("steady") == Path(
        "out/bench-results-profile-steady.svg"
    )


def test_without_py_spy_the_bench_says_so_in_one_line_and_carries_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(profiler, "py_spy", lambda: None)

    with Profiling(ProfileRequest(tmp_path / "r.json"), {"service": 1}) as profiling:
        pass

    assert profiling.written == []
    assert capsys.readouterr().out == (
        "bench: py-spy is not installed (pip install py-spy): no profile\n"
    )


def test_cyclic_collections_are_read_off_a_real_exposition_by_generation() -> None:
    before = gc_collections(generate_latest(REGISTRY).decode())
    gc.collect(0)
    gc.collect(2)
    after = gc_collections(generate_latest(REGISTRY).decode())

    young, _, old = (a - b for a, b in zip(after, before, strict=True))
    assert young >= 1 and old >= 1
    assert gc_collections("# no such metric\n") == [0, 0, 0]


def test_each_generations_collections_are_read_off_its_own_series() -> None:
    exposition = "\n".join(
        [
            "# TYPE python_gc_collections_total counter",
            'python_gc_collections_total{generation="0"} 12.0',
            'python_gc_collections_total{generation="1"} 3.0',
            'python_gc_collections_total{generation="2"} 1.0',
            'python_gc_objects_collected_total{generation="0"} 99.0',
        ]
    )
    assert gc_collections(exposition) == [12, 3, 1]


def test_a_drains_cyclic_collections_are_reported_when_counted() -> None:
    counted = DrainResult("service", 50_000, 2.0, 25_000.0, gc_collections=[0, 1, 2])
    baseline = DrainResult("baseline", 50_000, 9.0, 5_555.0)

    lines = report_lines(_report([counted, baseline]))

    assert "service: cyclic collections in `run` while timed: young 0, middle 1, old 2" in lines
    assert not any(line.startswith("baseline: cyclic") for line in lines)


def test_the_machine_line_says_how_the_interpreter_was_configured() -> None:
    report = BenchReport(
        {"cpu": "x", "cores": 2, "python": "3.13.5", "python_build": "configured with PGO and LTO"},
        {},
        [],
    )

    assert (
        report_lines(report)[0]
        == "\nmachine: x, 2 cores, Python 3.13.5, configured with PGO and LTO"
    )


def test_a_report_from_before_the_build_was_recorded_says_it_is_unknown() -> None:
    report = BenchReport({"cpu": "x", "cores": 2, "python": "3.11.7"}, {}, [])

    assert report_lines(report)[0].endswith("Python 3.11.7, configure flags unknown")


def test_the_bench_reads_its_own_interpreters_flags() -> None:
    assert _machine()["python_build"] == python_build(sysconfig.get_config_var("CONFIG_ARGS"))


def test_the_results_folder_is_made_before_the_run(tmp_path: Path) -> None:
    results = tmp_path / "runs" / "today" / "bench.json"
    assert results_folder_problem(results) is None
    assert results.parent.is_dir()
    assert results_folder_problem(results) is None  # already there: fine


def test_results_named_without_a_folder_go_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert results_folder_problem(Path("out.json")) is None


def test_results_named_as_a_folder_are_refused_before_the_run(tmp_path: Path) -> None:
    problem = results_folder_problem(tmp_path)
    assert problem is not None and "it is a folder" in problem


def test_a_folder_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests may run as root, whom no permission bit stops: ask os.access as a user would.
    monkeypatch.setattr(bench.os, "access", lambda path, mode: Path(path) != tmp_path)
    problem = results_folder_problem(tmp_path / "bench.json")
    assert problem is not None and "not writable" in problem


def test_a_results_folder_that_cannot_be_made_stops_the_bench_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    results = tmp_path / "taken" / "bench.json"
    # No server is started and nothing is published: the answer comes at once.
    assert cli.main(["bench", "--json", str(results)]) == 2
    assert f"cannot write the results to {results}" in capsys.readouterr().out
