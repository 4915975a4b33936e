"""`compare`'s plan and arithmetic, without I/O: the alternating order, rounds kept in
place when a drain fails and compared only where both sides drained, the medians, the
round-by-round differences and the report."""

from __future__ import annotations

from typing import Any

import pytest
from user_events_devtools.compare import (
    in_both,
    interpreters_differ,
    paired,
    report_lines,
    run_order,
    run_rounds,
    side_figures,
    sign_test,
    venv_python,
)


def _drain(eps: float, run: float, pg: float | None) -> dict[str, Any]:
    return {"events_per_second": eps, "us_per_event": run, "postgres_us_per_event": pg}


def test_the_sides_alternate_so_that_neither_always_runs_first() -> None:
    assert run_order(4) == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1), (3, 1), (3, 0)]


def test_a_failed_drain_keeps_its_rounds_place_and_the_order_alternates() -> None:
    calls: list[tuple[int, int]] = []

    def drain(round_: int, side: int) -> dict[str, Any] | None:
        calls.append((round_, side))
        return None if (round_, side) == (1, 0) else _drain(1_000 * round_ + side, 1.0, 1.0)

    first, second = run_rounds(3, drain)

    assert calls == run_order(3)
    assert [r and r["events_per_second"] for r in first] == [0, None, 2_000]
    assert [r and r["events_per_second"] for r in second] == [1, 1_001, 2_001]


def test_a_round_one_side_lacks_is_left_out_of_both() -> None:
    a, b = _drain(1, 1, 1), _drain(2, 2, 2)

    assert in_both([a, None, a], [b, b, None]) == ([a, None, None], [b, None, None])


def test_a_sides_medians_leave_out_a_round_not_compared_and_a_figure_not_measured() -> None:
    side = side_figures(
        "main", "abc", [_drain(20_000, 40.0, 20.0), None, _drain(24_000, 30.0, None)]
    )

    assert side.rounds == 2
    assert side.medians == {
        "events_per_second": 22_000,
        "us_per_event": 35.0,
        "postgres_us_per_event": 20.0,
    }
    assert side.each["us_per_event"] == [40.0, None, 30.0]


def test_differences_are_second_minus_first_and_better_means_lower_cpu_or_a_higher_rate() -> None:
    first = side_figures("main", "a", [_drain(20_000, 40.0, 20.0), _drain(25_000, 30.0, 18.0)])
    second = side_figures(".", "b", [_drain(22_000, 37.0, 19.0), _drain(24_000, 31.0, 16.0)])

    by_figure = {p.figure: p for p in paired(first, second)}

    rate, run, pg = (
        by_figure[f] for f in ("events_per_second", "us_per_event", "postgres_us_per_event")
    )
    assert rate.differences == [2_000, -1_000] and rate.better_in == 1
    assert run.differences == [-3.0, 1.0] and run.better_in == 1
    assert pg.differences == [-1.0, -2.0] and pg.median == -1.5 and pg.better_in == 2


def test_the_second_side_better_in_every_round_is_said_so() -> None:
    first = side_figures("main", "87dc2ad15108aa", [_drain(20_000, 40.0, 20.0)] * 3)
    dirty = "cc5c8c7d" * 5 + "+dirty"  # a whole commit, as `git rev-parse` gives it
    second = side_figures(".", dirty, [_drain(21_000, 38.0, 19.5)] * 3)

    lines = report_lines(first, second)

    assert lines[0].split() == ["side", "rounds", "events/s", "run", "us/ev", "PG", "us/ev"]
    assert lines[1].split() == ["main", "@", "87dc2ad15108", "3", "20,000", "40.0", "20.0"]
    # Shortened, the commit still says the checkout had changes.
    assert lines[2].split() == [".", "@", "cc5c8c7dcc5c+dirty", "3", "21,000", "38.0", "19.5"]
    assert "second (.) minus first (main), round by round:" in lines
    assert lines[-3].endswith(
        "us_per_event: median difference -2.0, better in 3 of 3 rounds "
        "(-2.0, -2.0, -2.0); sign test p = 0.25"
    )
    assert lines[-4].startswith("  events_per_second: median difference +1,000, better in 3 of 3")
    # Three rounds can never decide, and the report says so.
    assert lines[-1] == (
        "(only 3 rounds in common: even a side better in every one would leave a sign test "
        "p of 0.25; take 8 or more to decide)"
    )


@pytest.mark.parametrize("rounds", [0, 1])
def test_with_no_round_in_common_there_is_no_difference_to_report(rounds: int) -> None:
    first = side_figures("main", "a", [None] * rounds)
    second = side_figures(".", "b", [_drain(1.0, 1.0, 1.0)] * rounds)

    assert all(p.median is None and p.better_in == 0 for p in paired(first, second))
    assert "median difference -, better in 0 of 0 rounds ()" in report_lines(first, second)[-1]


def test_a_virtual_environments_python_is_read_off_its_pyvenv_cfg() -> None:
    cfg = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.13.0\n"

    assert venv_python(cfg) == "3.13.0"
    assert venv_python("home = /usr/bin\n") is None


def test_sides_on_one_python_configured_alike_may_be_compared() -> None:
    same = ("3.13.5", "configured with PGO and LTO")

    assert interpreters_differ({"main": same, ".": same}) is None


@pytest.mark.parametrize(
    "second",
    [
        ("3.13.0", "configured with PGO and LTO"),  # another version
        ("3.13.5", "configure flags name neither PGO nor LTO"),  # the same, built otherwise
        (None, "configured with PGO and LTO"),  # a version not read
    ],
)
def test_sides_on_pythons_that_differ_are_refused_naming_each(
    second: tuple[str | None, str],
) -> None:
    refused = interpreters_differ({"main": ("3.13.5", "configured with PGO and LTO"), ".": second})

    assert refused is not None
    assert "main: Python 3.13.5, configured with PGO and LTO" in refused
    assert f".: Python {second[0] or 'unknown'}, {second[1]}" in refused


@pytest.mark.parametrize(
    ("better", "worse", "p"),
    [
        (3, 0, 0.25),  # three of three: a coin does it a quarter of the time, either way
        (6, 0, 2 / 64),
        (0, 6, 2 / 64),  # worse in every round is as clear as better in every round
        (3, 1, 10 / 16),  # three of four says nothing
        (10, 6, 2 * 14_893 / 65_536),  # the third AMD EPYC's 16 rounds (docs/performance.md)
        (8, 8, 1.0),
        (0, 1, 1.0),
    ],
)
def test_the_sign_test_is_the_chance_a_coin_splits_the_rounds_as_unevenly(
    better: int, worse: int, p: float
) -> None:
    assert sign_test(better, worse) == pytest.approx(p)


def test_tied_rounds_are_left_out_of_the_sign_test() -> None:
    first = side_figures("main", "a", [_drain(20_000, 40.0, 20.0)] * 4)
    second = side_figures(".", "b", [_drain(20_000, 38.0, 20.0)] * 4)

    by_figure = {p.figure: p for p in paired(first, second)}

    assert by_figure["us_per_event"].sign_test_p == pytest.approx(2 / 16)
    # Every round tied: nothing to test, and the report says nothing of it.
    assert by_figure["postgres_us_per_event"].sign_test_p is None
    assert by_figure["postgres_us_per_event"].better_in == 0
    assert report_lines(first, second)[-2].endswith("(+0.0, +0.0, +0.0, +0.0)")


def test_enough_rounds_to_decide_need_no_warning() -> None:
    first = side_figures("main", "a", [_drain(20_000, 40.0, 20.0)] * 6)
    second = side_figures(".", "b", [_drain(21_000, 38.0, 19.0)] * 6)

    lines = report_lines(first, second)

    assert lines[-1].endswith("; sign test p = 0.031")
    assert not any(line.startswith("(only") for line in lines)
