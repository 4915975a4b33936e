"""`dlq redrive --max-redrives`: a refusal at the limit waits for a higher one, any other
refusal and every redrive stay handled. Pure."""

from __future__ import annotations

from consumer.edges.store_redrive import HandledRow
from consumer.tools.dlq.redrive_rules import Handled, advance, redrive_ranges
from consumer.tools.kafkareader import OffsetRange

ROWS = [
    HandledRow(0, 1, "redriven", False, 1),
    HandledRow(0, 2, "refused", True, 3),  # refused at limit 3
    HandledRow(0, 3, "refused", False, 0),  # refused for good (a dlq.dropped header)
    HandledRow(1, 4, "refused", True, 5),  # refused at limit 5
]


def test_a_refusal_at_the_limit_is_retried_only_by_a_run_with_a_higher_limit() -> None:
    same = Handled.of(ROWS, 3)
    assert same.retry == frozenset() and same.waiting == 2
    assert same.skip == {(0, 1), (0, 2), (0, 3), (1, 4)}
    higher = Handled.of(ROWS, 4)
    assert higher.retry == {(0, 2)} and higher.waiting == 1
    assert higher.skip == {(0, 1), (0, 3), (1, 4)}
    assert Handled.of(ROWS, 10).retry == {(0, 2), (1, 4)}
    assert Handled.of(ROWS, 10).retried_from() == {0: 2, 1: 4}


def test_a_run_reads_back_from_the_first_letter_it_redrives_again() -> None:
    positions, beginnings = {0: 8, 1: 6}, {0: 0, 1: 5}
    assert redrive_ranges({0: 10, 1: 9}, positions, beginnings, (), {0: 2, 1: 4}) == {
        0: OffsetRange(2, 10),
        1: OffsetRange(5, 9),  # the letter at 4 is gone (retention): from the beginning
    }
    assert redrive_ranges({0: 10, 1: 9}, positions, beginnings, (), {}) == {
        0: OffsetRange(8, 10),
        1: OffsetRange(6, 9),
    }
    # Explicit offsets decide alone.
    assert redrive_ranges({0: 10}, positions, beginnings, [(0, 9)], {0: 2}) == {
        0: OffsetRange(9, 10)
    }


def test_letters_read_again_behind_the_position_do_not_hold_it() -> None:
    # A letter refused at a lower limit, left out by this run's filters, sits before the
    # position: the position goes on over what follows it.
    assert advance(8, [(2, False), (8, True), (9, True)]) == (10, True)
    assert advance(8, [(2, True), (8, False), (9, True)]) == (8, False)
