"""`user-events-consumer bench`: drain a pre-loaded topic with the real `run` path and with
the seed's one-transaction-per-message baseline, on the same data, and compare; optionally
a probe of what the parts allow, bare, on the same topic, and a steady-load run. The
command: its options, the phases in order, the report.

Everything runs against real servers: the broker and PostgreSQL named by
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, else embedded ones started here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sysconfig
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consumer.settings import Settings
from user_events_devtools.benchservers import phase_settings, preload, scratch_databases, servers
from user_events_devtools.drains import (
    DrainResult,
    drain_with_baseline,
    drain_with_service,
    parking_outcome,
    states_agree,
)
from user_events_devtools.interpreter import python_build
from user_events_devtools.probe import Probe, probe_lines, run_probe
from user_events_devtools.profiler import SUFFIXES, ProfileRequest
from user_events_devtools.stages import stage_costs
from user_events_devtools.steady import steady_load

# The service's defaults: the stages run on the batches it would take.
_BATCH_SIZE: int = Settings.model_fields["kafka_max_poll_records"].default
_MAX_BYTES: int = Settings.model_fields["max_message_bytes"].default


@dataclass
class BenchReport:
    """What `bench` prints and writes to its JSON file."""

    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[DrainResult] = field(default_factory=list)
    ratio: float | None = None
    states_agree: bool | None = None
    steady: dict[str, Any] | None = None
    # CPU per record of decoding alone (bytes to event or rejection), no I/O: the
    # "decode" stage of ``stages_us_per_record``, kept by this name for older reports.
    decode_us_per_record: float | None = None
    # CPU per record of each pure stage of the hot path, no I/O (``stages.STAGES``).
    stages_us_per_record: dict[str, float] | None = None
    # With --early-updates: what became of them (see ``parking_outcome``).
    parking: dict[str, Any] | None = None
    # With --mode probe: what the parts allow, each bare (see ``user_events_devtools.probe``).
    probe: Probe | None = None


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_build": python_build(sysconfig.get_config_var("CONFIG_ARGS")),
        "platform": platform.platform(),
    }


def say(line: str) -> None:
    """A progress line, shown at once."""
    print(line, flush=True)


async def run_bench(args: argparse.Namespace) -> BenchReport:
    report = BenchReport(_machine(), {k: v for k, v in vars(args).items() if k != "handler"})
    if args.mode in ("drain", "all"):
        stages = stage_costs(args.events, args.users, _BATCH_SIZE, _MAX_BYTES)
        report.stages_us_per_record = stages
        report.decode_us_per_record = stages["decode"]
    profile = ProfileRequest(Path(args.json), args.profile_format) if args.profile else None
    with servers() as (bootstrap, server_url, broker_pid):
        async with scratch_databases(server_url) as new_db:
            run_id = uuid.uuid4().hex[:8]
            if args.mode in ("drain", "probe", "all"):
                settings = phase_settings(bootstrap, f"bench-{run_id}")
                print(
                    f"bench: publishing {args.events} events over {args.users} users ...",
                    flush=True,
                )
                ends = await preload(
                    settings, args.events, args.users, args.traceparents, args.early_updates
                )
            if args.mode in ("drain", "all"):
                service_db = await new_db(f"bench_service_{run_id}")
                say("bench: draining with the service (`run`) ...")
                report.results.append(
                    await drain_with_service(
                        settings,
                        service_db,
                        ends,
                        args.events,
                        args.members,
                        broker_pid=broker_pid,
                        profile=profile,
                    )
                )
                if args.early_updates:
                    report.parking = await parking_outcome(service_db)
                # The baseline dead-letters what the service parks and heals: their states
                # would differ by design, so an early mix is drained by the service alone.
                if not args.skip_baseline and not args.early_updates:
                    baseline_db = await new_db(f"bench_baseline_{run_id}")
                    say("bench: draining with the baseline (one transaction per message) ...")
                    report.results.append(
                        await drain_with_baseline(
                            settings, baseline_db, ends, args.events, broker_pid=broker_pid
                        )
                    )
                    report.ratio = (
                        report.results[0].events_per_second / report.results[1].events_per_second
                    )
                    report.states_agree = await states_agree(service_db, baseline_db)
            if args.mode in ("probe", "all"):
                print(
                    "bench: probing the parts bare (drain, log COPY, users upsert) ...", flush=True
                )
                report.probe = await run_probe(
                    settings,
                    server_url,
                    ends,
                    run_id,
                    users=args.users,
                    traceparents=args.traceparents,
                    early=args.early_updates,
                    broker_pid=broker_pid,
                )
            if args.mode in ("steady", "all"):
                settings = phase_settings(bootstrap, f"steady-{run_id}")
                steady_db = await new_db(f"bench_steady_{run_id}")
                print(
                    f"bench: steady load, {args.rate} events/s for {args.seconds} s ...", flush=True
                )
                report.steady = await steady_load(
                    settings,
                    steady_db,
                    args.rate,
                    args.seconds,
                    broker_pid=broker_pid,
                    profile=profile,
                )
    return report


def steady_row(steady: dict[str, Any]) -> DrainResult:
    """The steady load as a row of the table: its latencies are the batch ones (fetch to
    commit), as the drains'."""
    return DrainResult(
        "steady",
        steady["events"],
        steady["seconds"],
        steady["events"] / steady["seconds"],
        steady["batch_p50_seconds"],
        steady["batch_p99_seconds"],
        None,
        steady["cpu_seconds"],
        steady["postgres_cpu_seconds"],
        steady["broker_cpu_seconds"],
    )


def report_lines(report: BenchReport) -> list[str]:
    """The printed report: a row per drain (and the steady load), then what they mean."""

    def fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:,.{digits}f}"

    lines = [
        f"\nmachine: {report.machine['cpu']}, {report.machine['cores']} cores, "
        f"Python {report.machine['python']}, "
        f"{report.machine.get('python_build', 'configure flags unknown')}",
    ]
    rows = report.results + ([steady_row(report.steady)] if report.steady else [])
    if rows:  # none with --mode probe
        lines.append(
            f"{'path':<10} {'events':>9} {'seconds':>8} {'events/s':>10} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'RSS MB':>7} {'CPU s':>7} {'run us/ev':>10} {'PG us/ev':>9} "
            f"{'broker us/ev':>13}"
        )
        for r in rows:
            lines.append(
                f"{r.name:<10} {r.events:>9,} {r.seconds:>8.1f} {r.events_per_second:>10,.0f} "
                f"{fmt(r.batch_p50_seconds, 1000):>8} {fmt(r.batch_p99_seconds, 1000):>8} "
                f"{fmt(r.peak_rss_mb):>7} {fmt(r.cpu_seconds, digits=2):>7} "
                f"{fmt(r.us_per_event):>10} {fmt(r.postgres_us_per_event):>9} "
                f"{fmt(r.broker_us_per_event):>13}"
            )
        lines += [
            "us/ev: CPU per event while timed, of the `run` process(es) (the bench itself for",
            "the baseline), of the PostgreSQL backends serving them, of the broker (steady: "
            "also its producer's)",
        ]
    for r in rows:
        if r.gc_collections is not None:
            young, middle, old = r.gc_collections
            lines.append(
                f"{r.name}: cyclic collections in `run` while timed: young {young}, "
                f"middle {middle}, old {old}"
            )
    if (stages := report.stages_us_per_record) is not None:
        lines.append(
            "pure stages, us of CPU per record (no I/O): "
            + ", ".join(f"{name} {cost:.2f}" for name, cost in stages.items())
            + f"; together {sum(stages.values()):.2f}"
        )
    if report.ratio is not None:
        lines.append(
            f"service/baseline: {report.ratio:.1f}x; same final state: {report.states_agree}"
        )
    if (p := report.parking) is not None:
        lines.append(
            f"early updates: {p['healed']} healed (waited p50 {fmt(p['waited_p50_seconds'], 1000)} "
            f"ms, max {fmt(p['waited_max_seconds'], 1000)} ms), {p['still_parked']} still "
            "parked when the drain ended"
        )
    probe = report.probe
    if probe is not None:
        lines += probe_lines(probe, report.results[0] if report.results else None)
    if any(r.postgres_cpu_seconds is None for r in rows) or (probe and not probe.postgres_read):
        lines.append("PostgreSQL is not local: its CPU is not measured")
    if any(r.broker_cpu_seconds is None for r in rows) or (probe and not probe.broker_read):
        lines.append("the broker is not the embedded one: its CPU is not measured")
    if report.steady:
        s = report.steady
        lines.append(
            f"steady {s['rate_per_second']}/s for {s['seconds']} s: time to commit "
            f"p50 {fmt(s['p50_seconds'], 1000)} ms, p99 {fmt(s['p99_seconds'], 1000)} ms; "
            f"batch fetch to commit p50 {fmt(s['batch_p50_seconds'], 1000)} ms, "
            f"p99 {fmt(s['batch_p99_seconds'], 1000)} ms"
        )
    return lines


def print_report(report: BenchReport) -> None:
    for line in report_lines(report):
        print(line)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure throughput, latency and memory on real servers",
        description="Pre-load a topic and drain it with the service and with a "
        "one-transaction-per-message baseline; optionally a steady-load run, and a probe "
        "of what the parts allow, each bare, on the same topic. Uses "
        "KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else embedded servers.",
    )
    bench.epilog = (
        "Exit codes: 0 measured (and, with the baseline, both databases ended identical); "
        "1 the service's and the baseline's final states differ, or a server failed. See "
        "the README's Throughput section."
    )
    bench.add_argument("--events", type=int, default=200_000, help="events to pre-load")
    bench.add_argument("--users", type=int, default=50_000, help="distinct users")
    bench.add_argument(
        "--mode",
        choices=["drain", "steady", "probe", "all"],
        default="all",
        help="probe: what the parts allow, each bare, on the same topic (the README's "
        "Throughput section); all: drain, probe, then steady",
    )
    bench.add_argument(
        "--traceparents",
        action="store_true",
        help="pre-load events that each carry a W3C traceparent (for a drain with traces on)",
    )
    bench.add_argument("--skip-baseline", action="store_true", help="drain with the service only")
    bench.add_argument(
        "--early-updates",
        type=float,
        default=0.0,
        help="share of the events that are updates published right before their user's "
        "create, under another key (parked, then healed); drains with the service only",
    )
    bench.add_argument(
        "--members",
        type=int,
        default=1,
        help="drain with this many `run` processes in one consumer group",
    )
    bench.add_argument("--rate", type=int, default=5000, help="steady-load events per second")
    bench.add_argument("--seconds", type=float, default=30.0, help="steady-load duration")
    bench.add_argument("--json", default="bench-results.json", help="where to write the results")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="record each `run` process with py-spy while it is timed; the profiles are "
        "written beside the --json file (RESULTS-profile-service.speedscope.json, ...)",
    )
    bench.add_argument(
        "--profile-format",
        choices=sorted(SUFFIXES),
        default="speedscope",
        help="py-spy's output: speedscope (JSON, for speedscope.app) or flamegraph (SVG)",
    )
    bench.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    problem = results_folder_problem(Path(args.json))
    if problem is not None:
        print(f"bench: {problem}", flush=True)
        return 2
    report = asyncio.run(run_bench(args))
    print_report(report)
    Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if report.states_agree in (None, True) else 1


def results_folder_problem(results: Path) -> str | None:
    """Make the folder the results (and the profiles beside them) go to; None when it is
    there, else why not. Done before the run: a drain of minutes, or its profiles, must not
    be lost at the end to a folder that was never there."""
    try:
        results.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot write the results to {results}: {exc.strerror or exc}"
    if results.is_dir():
        return f"cannot write the results to {results}: it is a folder; name a file in it"
    if not os.access(results.parent, os.W_OK | os.X_OK):
        return f"cannot write the results to {results}: its folder is not writable"
    return None
