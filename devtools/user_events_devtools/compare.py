"""`user-events-consumer compare`: the bench's drain, for two versions of the code side by
side, in alternating runs on one machine: what the README's lever tables rest on.

One drain moves by 10 to 20% from the next on a shared machine, more than most levers
are worth; so each side is drained several times, in the order A B, B A, A B, ... (a drift
of the machine over the hour falls on both sides alike), each with its own copy of the
code and of the bench, and the report gives each side's medians and, round by round, the
differences between the two sides' drains of one round. A lever shows when the second
side is lower in most rounds, not when one median is.

A side is a git ref, checked out in a worktree of its own under ``--work`` with its own
virtual environment (the ref's own ``make .venv/.installed``), or ``.``: the checkout the
command runs in, as it is. Planning and arithmetic first, pure; the runs last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WORKING_TREE = "."
# The figures each drain writes (``results[0]`` of its JSON) that the report compares.
FIGURES = ("events_per_second", "us_per_event", "postgres_us_per_event")
_LOWER_IS_BETTER = {"events_per_second": False, "us_per_event": True, "postgres_us_per_event": True}


def run_order(sides: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """(round, side) in the order to drain: the sides as given in even rounds, reversed in
    odd ones, so that neither side always runs first."""
    order: list[tuple[int, str]] = []
    for i in range(rounds):
        names = sides if i % 2 == 0 else list(reversed(sides))
        order += [(i, name) for name in names]
    return order


@dataclass(frozen=True)
class SideFigures:
    """One side's drains: each figure's median and its runs, in round order."""

    side: str
    runs: int
    medians: dict[str, float | None]
    each: dict[str, list[float | None]]


@dataclass(frozen=True)
class Paired:
    """A figure's differences, second side minus first, over the rounds both drained."""

    figure: str
    differences: list[float]
    median: float | None
    better_in: int  # rounds where the second side did better (lower CPU, higher rate)


def side_figures(side: str, results: Sequence[Mapping[str, Any] | None]) -> SideFigures:
    """``results``: the side's drain results by round (None: that drain failed)."""
    each = {f: [None if r is None else r.get(f) for r in results] for f in FIGURES}
    return SideFigures(
        side,
        sum(r is not None for r in results),
        {f: _median(values) for f, values in each.items()},
        each,
    )


def paired(first: SideFigures, second: SideFigures) -> list[Paired]:
    """Round by round, the second side's figures against the first's."""
    out = []
    for figure in FIGURES:
        differences = [
            b - a
            for a, b in zip(first.each[figure], second.each[figure], strict=False)
            if a is not None and b is not None
        ]
        lower = _LOWER_IS_BETTER[figure]
        better = sum(1 for d in differences if (d < 0 if lower else d > 0))
        out.append(Paired(figure, differences, _median(differences), better))
    return out


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report_lines(first: SideFigures, second: SideFigures) -> list[str]:
    """The printed comparison: each side's medians, then the paired differences."""

    def fmt(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        f"{'side':<24} {'drains':>6} {'events/s':>10} {'run us/ev':>10} {'PG us/ev':>9}",
    ]
    for s in (first, second):
        m = s.medians
        lines.append(
            f"{s.side[:24]:<24} {s.runs:>6} {fmt(m['events_per_second'], 0):>10} "
            f"{fmt(m['us_per_event'], 1):>10} {fmt(m['postgres_us_per_event'], 1):>9}"
        )
    lines.append(
        f"medians of each side's drains; {second.side} against {first.side}, round by round:"
    )
    for p in paired(first, second):
        digits = 0 if p.figure == "events_per_second" else 1
        signed = "-" if p.median is None else f"{p.median:+,.{digits}f}"
        lines.append(
            f"  {p.figure}: median difference {signed}, better in {p.better_in} of "
            f"{len(p.differences)} rounds ("
            + ", ".join(f"{d:+,.{digits}f}" for d in p.differences)
            + ")"
        )
    return lines


# --- the runs ---------------------------------------------------------------------------------


def prepare(side: str, work: Path, python: str) -> Path:
    """The side's checkout, with its virtual environment installed by its own Makefile:
    the working tree itself, or a worktree of the commit the ref names now (named by the
    commit, so that a ref that moved is never drained from an older checkout)."""
    if side == WORKING_TREE:
        tree = Path.cwd()
    else:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{side}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        tree = work / commit[:12]
        if not tree.exists():
            work.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], check=True)
    subprocess.run(["make", "-C", str(tree), ".venv/.installed", f"PYTHON={python}"], check=True)
    return tree


def drain(tree: Path, out: Path, bench_args: Sequence[str]) -> dict[str, Any] | None:
    """One drain with the side's own bench; its service result, or None if it failed."""
    command = [str(tree / ".venv/bin/user-events-consumer"), "bench", "--mode", "drain"]
    command += ["--skip-baseline", *bench_args, "--json", str(out)]
    with out.with_suffix(".log").open("w") as log:
        done = subprocess.run(command, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not out.exists():
        return None
    result: dict[str, Any] = json.loads(out.read_text())["results"][0]
    return result


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="drain with two versions of the code, alternating, and compare",
        description="Drain the bench's topic with two versions of the consumer in turn "
        "(A B, B A, ...), each with its own bench, and report each side's medians and the "
        "round-by-round differences of events/s and CPU per event. A side is a git ref "
        "(checked out under --work, installed by its own Makefile) or '.' (this checkout). "
        "Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else embedded servers.",
    )
    compare.epilog = (
        "Exit codes: 0 every drain of both sides measured; 1 a drain failed (its log is "
        "beside its results); 2 a side could not be prepared (an unknown ref, a failed "
        "install). See the README's Throughput section."
    )
    compare.add_argument("first", help="the side compared against, e.g. main or a commit")
    compare.add_argument("second", nargs="?", default=WORKING_TREE, help="default: '.'")
    compare.add_argument("--rounds", type=_positive, default=5, help="drains of each side")
    compare.add_argument("--events", type=int, default=200_000, help="events each drain")
    compare.add_argument("--users", type=int, default=50_000, help="distinct users")
    compare.add_argument("--members", type=int, default=1, help="`run` processes per drain")
    compare.add_argument(
        "--python",
        default=Path(sys.base_prefix, "bin", "python3").as_posix(),
        help="the interpreter of a side's virtual environment (default: this one's)",
    )
    compare.add_argument(
        "--work", default=".bench-compare", help="where the sides' worktrees and results go"
    )
    compare.set_defaults(handler=_cmd_compare)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _cmd_compare(args: argparse.Namespace) -> int:
    work = Path(args.work).resolve()
    sides = [args.first, args.second]
    try:
        trees = {side: prepare(side, work, args.python) for side in dict.fromkeys(sides)}
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or "").strip() or f"exit code {exc.returncode}"
        print(f"compare: could not prepare {' '.join(exc.cmd)}: {why}", file=sys.stderr)
        return 2
    names = [
        f"{which}-{_label(side)}" for which, side in zip(("first", "second"), sides, strict=True)
    ]
    bench_args = ["--events", str(args.events), "--users", str(args.users)]
    bench_args += ["--members", str(args.members)]
    results: dict[str, list[dict[str, Any] | None]] = {name: [] for name in names}
    out_dir = work / "results"  # the last comparison's
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for round_, name in run_order(names, args.rounds):
        side = sides[names.index(name)]
        result = drain(trees[side], out_dir / f"{name}-{round_ + 1}.json", bench_args)
        results[name].append(result)
        print(f"round {round_ + 1}: {side}: " + _one_line(result), flush=True)
    first, second = (side_figures(side, results[n]) for side, n in zip(sides, names, strict=True))
    for line in report_lines(first, second):
        print(line)
    summary = out_dir / "compare-results.json"
    summary.write_text(
        json.dumps(
            {
                "sides": [asdict(first), asdict(second)],
                "paired": [asdict(p) for p in paired(first, second)],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {summary}")
    return 0 if first.runs == second.runs == args.rounds else 1


def _label(side: str) -> str:
    """A side as a file name: ``.`` is the checkout."""
    return "checkout" if side == WORKING_TREE else side.replace("/", "_")


def _one_line(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return "failed (see its .log)"

    def us(figure: str) -> str:
        value = result.get(figure)
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{result['events_per_second']:,.0f} events/s, run {us('us_per_event')} us/ev, "
        f"PG {us('postgres_us_per_event')} us/ev"
    )
