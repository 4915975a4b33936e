"""`user-events-consumer compare`: the bench's drain, for two versions of the code side by
side, in alternating runs on one machine: what the lever tables rest on (the README's
Throughput, docs/performance.md).

One drain moves by 10 to 25% from the next on a shared machine, more than most levers
are worth; so each side is drained several times, in the order A B, B A, A B, ... (a drift
of the machine over the hour falls on both sides alike), each with its own copy of the
code and of the bench, and the report gives each side's medians and, round by round, the
differences between the two sides' drains of one round, with the sign test's verdict on
them. A lever shows when the second side does better in most rounds, not when one median
does.

A side is a git ref, checked out in a worktree of its own under ``--work`` with its own
virtual environment (the ref's own ``make .venv/.installed``), or ``.``: the checkout the
command runs in, as it is. Both must run on one Python, one version configured alike, or
the comparison would measure the interpreter. Planning and arithmetic first, pure; the
runs last.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from user_events_devtools.interpreter import python_build_of

WORKING_TREE = "."
# The figures each drain writes (``results[0]`` of its JSON) that the report compares.
FIGURES = ("events_per_second", "us_per_event", "postgres_us_per_event")
_LOWER_IS_BETTER = {"events_per_second": False, "us_per_event": True, "postgres_us_per_event": True}

# The fewest rounds in which a lever better in every round reaches a sign test p below 0.05
# (6); the default leaves room for a round or two the machine spoils.
FEWEST_DECISIVE_ROUNDS = 6
DEFAULT_ROUNDS = 8

Result = Mapping[str, Any]
Results = list[Result | None]  # a side's drains by round; None where one failed


def run_order(rounds: int) -> list[tuple[int, int]]:
    """(round, side: 0 or 1) in the order to drain: the first side first in even rounds,
    the second in odd ones, so that neither always runs first."""
    order: list[tuple[int, int]] = []
    for i in range(rounds):
        order += [(i, side) for side in ((0, 1) if i % 2 == 0 else (1, 0))]
    return order


def run_rounds(rounds: int, drain: Callable[[int, int], Result | None]) -> tuple[Results, Results]:
    """Each side's results by round, drained in ``run_order``; ``drain(round, side)``
    gives None when a drain failed, which keeps its round's place."""
    results: tuple[Results, Results] = ([None] * rounds, [None] * rounds)
    for round_, side in run_order(rounds):
        results[side][round_] = drain(round_, side)
    return results


def in_both(first: Results, second: Results) -> tuple[Results, Results]:
    """The rounds both sides drained, the others None on both sides: the medians and the
    differences then cover the same rounds, and a failed drain does not leave the other
    side's drain of that round to tilt a median."""
    both = [a is not None and b is not None for a, b in zip(first, second, strict=True)]
    return (
        [r if ok else None for r, ok in zip(first, both, strict=True)],
        [r if ok else None for r, ok in zip(second, both, strict=True)],
    )


@dataclass(frozen=True)
class SideFigures:
    """One side's drains over the rounds compared: each figure's median and its values in
    round order. ``side`` is as given; ``commit`` what it ran (``+dirty``: with changes
    not committed)."""

    side: str
    commit: str
    rounds: int
    medians: dict[str, float | None]
    each: dict[str, list[float | None]]


@dataclass(frozen=True)
class Paired:
    """A figure's differences, second side minus first, over the rounds both drained."""

    figure: str
    differences: list[float]
    median: float | None
    better_in: int  # rounds where the second side did better (lower CPU, higher rate)
    sign_test_p: float | None  # ``sign_test`` of those rounds against the worse ones


def side_figures(side: str, commit: str, results: Results) -> SideFigures:
    each = {f: [None if r is None else r.get(f) for r in results] for f in FIGURES}
    return SideFigures(
        side,
        commit,
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
            for a, b in zip(first.each[figure], second.each[figure], strict=True)
            if a is not None and b is not None
        ]
        lower = _LOWER_IS_BETTER[figure]
        better = sum(1 for d in differences if (d < 0 if lower else d > 0))
        worse = sum(1 for d in differences if (d > 0 if lower else d < 0))
        out.append(
            Paired(figure, differences, _median(differences), better, sign_test(better, worse))
        )
    return out


def sign_test(better: int, worse: int) -> float | None:
    """The exact two-sided sign test: the chance that a fair coin, tossed once a round,
    would split the rounds at least as unevenly as ``better`` against ``worse`` (tied
    rounds left out). Small: the rounds say which side is cheaper. Large: they do not,
    whatever the medians say (3 of 3 rounds give 0.25, 6 of 6 give 0.03). None with no
    untied round."""
    rounds = better + worse
    if rounds == 0:
        return None
    tail = sum(math.comb(rounds, i) for i in range(min(better, worse) + 1))
    chance: float = 2 * tail / 2**rounds
    return min(1.0, chance)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def venv_python(pyvenv_cfg: str) -> str | None:
    """The Python version a virtual environment's ``pyvenv.cfg`` names."""
    for line in pyvenv_cfg.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return value.strip()
    return None


def interpreters_differ(pythons: Mapping[str, tuple[str | None, str]]) -> str | None:
    """Why two sides cannot be compared, given each one's Python (its version and what
    its configure flags say of PGO and LTO), or None when both run on one alike: a
    difference in either would be measured as the code's."""
    if len(set(pythons.values())) < 2:
        return None
    sides = ", ".join(
        f"{side}: Python {version or 'unknown'}, {build}"
        for side, (version, build) in pythons.items()
    )
    return f"the sides run on different Pythons ({sides})"


def report_lines(first: SideFigures, second: SideFigures) -> list[str]:
    """The printed comparison: each side's medians, then the paired differences."""

    def fmt(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [f"{'side':<30} {'rounds':>6} {'events/s':>10} {'run us/ev':>10} {'PG us/ev':>9}"]
    for s in (first, second):
        m = s.medians
        # The commit shortened, its "+dirty" kept: it says the checkout was not the commit.
        commit, plus, mark = s.commit.partition("+")
        label = f"{s.side} @ {commit[:12]}{plus}{mark}"
        lines.append(
            f"{label[-30:]:<30} {s.rounds:>6} "
            f"{fmt(m['events_per_second'], 0):>10} {fmt(m['us_per_event'], 1):>10} "
            f"{fmt(m['postgres_us_per_event'], 1):>9}"
        )
    lines += [
        "(medians over the rounds both sides drained)",
        f"second ({second.side}) minus first ({first.side}), round by round:",
    ]
    for p in paired(first, second):
        digits = 0 if p.figure == "events_per_second" else 1
        signed = "-" if p.median is None else f"{p.median:+,.{digits}f}"
        lines.append(
            f"  {p.figure}: median difference {signed}, better in {p.better_in} of "
            f"{len(p.differences)} rounds ("
            + ", ".join(f"{d:+,.{digits}f}" for d in p.differences)
            + ")"
            + ("" if p.sign_test_p is None else f"; sign test p = {p.sign_test_p:.2g}")
        )
    common = min(first.rounds, second.rounds)
    if 0 < common < FEWEST_DECISIVE_ROUNDS:
        lines.append(
            f"(only {common} round{'s' if common > 1 else ''} in common: even a side better "
            f"in every one would leave a sign test p of {sign_test(common, 0):.2g}; take "
            f"{DEFAULT_ROUNDS} or more to decide)"
        )
    return lines


# --- the runs ---------------------------------------------------------------------------------


class NotPrepared(Exception):
    """A side could not be checked out or installed."""


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare(side: str, root: Path, work: Path, python: str) -> tuple[Path, str]:
    """The side's checkout, with its virtual environment installed by its own Makefile,
    and the commit it runs: the checkout at ``root`` itself, or a worktree of the commit
    the ref names now (named by the commit, so that a ref that moved is never drained from
    an older checkout). A virtual environment already there is kept: its Python is checked
    by the caller."""
    try:
        if side == WORKING_TREE:
            tree = root
            changed = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
            commit = _git("rev-parse", "HEAD", cwd=root) + ("+dirty" if changed else "")
        else:
            try:
                commit = _git("rev-parse", "--verify", "--quiet", f"{side}^{{commit}}", cwd=root)
            except subprocess.CalledProcessError:
                raise NotPrepared(f"side {side!r}: it names no commit") from None
            tree = work / commit[:12]
            if not tree.exists():
                work.mkdir(parents=True, exist_ok=True)
                _git("worktree", "add", "--detach", str(tree), commit, cwd=root)
        subprocess.run(
            ["make", "-C", str(tree), ".venv/.installed", f"PYTHON={python}"], check=True
        )
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or "").strip() or f"{exc.cmd[0]} exited with {exc.returncode}"
        raise NotPrepared(f"side {side!r}: {why}") from None
    except OSError as exc:
        raise NotPrepared(f"side {side!r}: {exc}") from None
    return tree, commit


def drain(tree: Path, out: Path, bench_args: Sequence[str]) -> Result | None:
    """One drain with the side's own bench; its service result, or None if it failed."""
    command = [str(tree / ".venv/bin/user-events-consumer"), "bench", "--mode", "drain"]
    command += ["--skip-baseline", *bench_args, "--json", str(out)]
    with out.with_suffix(".log").open("w") as log:
        done = subprocess.run(command, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        return None
    try:
        result: Result = json.loads(out.read_text())["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
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
        "Exit codes: 0 every drain of both sides measured; 1 some drain failed (its log is "
        "beside its results); 2 nothing was compared: a side could not be prepared (an "
        "unknown ref, a failed install), the sides' Pythons differ, or no drain measured. "
        "See the README's Throughput section."
    )
    compare.add_argument("first", help="the side compared against, e.g. main or a commit")
    compare.add_argument("second", nargs="?", default=WORKING_TREE, help="default: '.'")
    compare.add_argument(
        "--rounds",
        type=_positive,
        default=DEFAULT_ROUNDS,
        help=f"drains of each side (default {DEFAULT_ROUNDS}; under "
        f"{FEWEST_DECISIVE_ROUNDS}, no result can reach a sign test p below 0.05)",
    )
    compare.add_argument("--events", type=int, default=200_000, help="events each drain")
    compare.add_argument("--users", type=int, default=50_000, help="distinct users")
    compare.add_argument("--members", type=int, default=1, help="`run` processes per drain")
    compare.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter a new worktree's virtual environment is built with (default: "
        "this one); both sides must run on one Python version",
    )
    compare.add_argument(
        "--work",
        help="where the worktrees and the results go (default: .bench-compare in the checkout)",
    )
    compare.set_defaults(handler=_cmd_compare)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        root = Path(_git("rev-parse", "--show-toplevel"))
    except (subprocess.CalledProcessError, OSError):
        print("compare: not in a git checkout", file=sys.stderr)
        return 2
    work = Path(args.work).resolve() if args.work else root / ".bench-compare"
    sides = (args.first, args.second)
    prepared: dict[str, tuple[Path, str]] = {}
    try:  # the checkout first: the quickest to fail
        for side in sorted(set(sides), key=lambda s: s != WORKING_TREE):
            prepared[side] = prepare(side, root, work, args.python)
    except NotPrepared as exc:
        print(f"compare: could not prepare {exc}", file=sys.stderr)
        return 2
    pythons = {side: _python_of(tree) for side, (tree, _) in prepared.items()}
    if refused := interpreters_differ(pythons):
        print(f"compare: {refused}", file=sys.stderr)
        return 2
    bench_args = ["--events", str(args.events), "--users", str(args.users)]
    if args.members != 1:  # refs older than --members refuse it
        bench_args += ["--members", str(args.members)]
    names = [
        f"{which}-{_label(side)}" for which, side in zip(("first", "second"), sides, strict=True)
    ]
    out_dir = work / "compare-results"  # the last comparison's
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    def drain_side(round_: int, side: int) -> Result | None:
        tree = prepared[sides[side]][0]
        result = drain(tree, out_dir / f"{names[side]}-{round_ + 1}.json", bench_args)
        print(f"round {round_ + 1}: {names[side]}: {_one_line(result)}", flush=True)
        return result

    drained = run_rounds(args.rounds, drain_side)
    first, second = (
        side_figures(side, prepared[side][1], results)
        for side, results in zip(sides, in_both(*drained), strict=True)
    )
    for line in report_lines(first, second):
        print(line)
    summary = out_dir / "compare-results.json"
    version, build = next(iter(pythons.values()))  # one for both, checked above
    comparison = {
        "python": version,
        "python_build": build,
        "sides": [asdict(first), asdict(second)],
        "paired": [asdict(p) for p in paired(first, second)],
    }
    summary.write_text(json.dumps(comparison, indent=2) + "\n")
    print(f"results written to {summary}")
    measured = sum(r is not None for results in drained for r in results)
    return 0 if measured == 2 * args.rounds else 2 if measured == 0 else 1


def _python_of(tree: Path) -> tuple[str | None, str]:
    """The side's Python: its version (off its ``pyvenv.cfg``) and what its configure
    flags say of PGO and LTO."""
    try:
        version = venv_python((tree / ".venv/pyvenv.cfg").read_text())
    except OSError:
        version = None
    return version, python_build_of(tree / ".venv/bin/python")


def _label(side: str) -> str:
    """A side as a file name: ``.`` is the checkout."""
    return "checkout" if side == WORKING_TREE else side.replace("/", "_")


def _one_line(result: Result | None) -> str:
    if result is None:
        return "failed (see its .log)"

    def us(figure: str) -> str:
        value = result.get(figure)
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{result['events_per_second']:,.0f} events/s, run {us('us_per_event')} us/ev, "
        f"PG {us('postgres_us_per_event')} us/ev"
    )
