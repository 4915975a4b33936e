"""`compare`'s plan and arithmetic, without I/O: the alternating order, each side's medians
with a failed drain among them, and the round-by-round differences."""

from __future__ import annotations

from typing import Any

import pytest
from user_events_devtools.compare import paired, report_lines, run_order, side_figures


def _drain(eps: float, run: float, pg: float | None) -> dict[str, Any]:
    return {"events_per_second": eps, "us_per_event": run, "postgres_us_per_event": pg}


def test_the_sides_alternate_so_that_neither_always_runs_first() -> None:
    assert run_order(["a", "b"], 4) == [
        (0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b"), (3, "b"), (3, "a"),
    ]  # fmt: skip


def test_a_sides_medians_leave_out_a_failed_drain_and_a_figure_not_measured() -> None:
    side = side_figures("main", [_drain(20_000, 40.0, 20.0), None, _drain(24_000, 30.0, None)])

    assert side.runs == 2
    assert side.medians == {
        "events_per_second": 22_000,
        "us_per_event": 35.0,
        "postgres_us_per_event": 20.0,
    }
    assert side.each["us_per_event"] == [40.0, None, 30.0]


def test_differences_are_taken_round_by_round_over_the_rounds_both_sides_drained() -> None:
    first = side_figures("main", [_drain(20_000, 40.0, 20.0), _drain(25_000, 30.0, 18.0), None])
    second = side_figures(
        ".", [_drain(22_000, 37.0, 21.0), _drain(24_000, 31.0, 17.0), _drain(9, 9, 9)]
    )

    by_figure = {p.figure: p for p in paired(first, second)}

    rate, run, pg = (
        by_figure[f] for f in ("events_per_second", "us_per_event", "postgres_us_per_event")
    )
    assert rate.differences == [2_000, -1_000] and rate.better_in == 1  # higher is better
    assert run.differences == [-3.0, 1.0] and run.better_in == 1  # lower is better
    assert pg.differences == [1.0, -1.0] and pg.median == 0.0 and pg.better_in == 1


def test_the_second_side_better_in_every_round_is_said_so() -> None:
    first = side_figures("main", [_drain(20_000, 40.0, 20.0)] * 3)
    second = side_figures(".", [_drain(21_000, 38.0, 19.5)] * 3)

    lines = report_lines(first, second)

    assert lines[0].split() == ["side", "drains", "events/s", "run", "us/ev", "PG", "us/ev"]
    assert lines[1].split() == ["main", "3", "20,000", "40.0", "20.0"]
    assert lines[2].split() == [".", "3", "21,000", "38.0", "19.5"]
    assert "us_per_event: median difference -2.0, better in 3 of 3 rounds" in lines[-2]
    assert lines[-3].startswith("  events_per_second: median difference +1,000, better in 3 of 3")


@pytest.mark.parametrize("rounds", [0, 1])
def test_with_no_round_in_common_there_is_no_difference_to_report(rounds: int) -> None:
    first = side_figures("main", [None] * rounds)
    second = side_figures(".", [_drain(1.0, 1.0, 1.0)] * rounds)

    assert all(p.median is None and p.better_in == 0 for p in paired(first, second))
    assert "median difference -, better in 0 of 0 rounds ()" in report_lines(first, second)[-1]
