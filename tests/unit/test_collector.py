"""The cyclic collector's tuning: for `run`, young collections are not triggered by the
batches in flight alone, whatever the batch settings; for `rebuild`, none while it folds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumer.collector import (
    batch_thresholds,
    paused,
    tune_for_batches,
    young_collection_threshold,
)


def test_the_young_threshold_is_twice_what_the_batches_in_flight_hold_at_most() -> None:
    # Defaults: 5,000 records a batch, 2 lanes, so 4 batches in flight; the drains' peak
    # was about 200,000 tracked objects young.
    assert young_collection_threshold(5000, 2) == 400_000
    # It grows with both settings, so that larger batches do not bring the rescans back.
    assert young_collection_threshold(10_000, 2) == 2 * young_collection_threshold(5000, 2)
    assert young_collection_threshold(5000, 6) == 2 * young_collection_threshold(5000, 2)


def test_small_batches_keep_the_floor_and_the_largest_settings_the_ceiling() -> None:
    assert young_collection_threshold(1, 1) == 100_000
    assert young_collection_threshold(100, 1) == 100_000
    # Cyclic garbage (a cycle that held a batch) waits no longer than this.
    assert young_collection_threshold(100_000, 16) == 2_000_000


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector_restored")
def test_run_tunes_the_collector_from_its_batch_settings() -> None:
    tune_for_batches(max_poll_records=8000, concurrent_batches=3)

    # The young threshold (the older ones mean other things from Python 3.14 on).
    assert gc.get_threshold()[0] == 20 * 8000 * 5
    # What the imports made is out of the collector's scans.
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_restored")
def test_a_pause_stops_collections_and_gives_the_collector_back_even_on_an_error() -> None:
    gc.enable()
    with paused():
        assert not gc.isenabled()
    assert gc.isenabled()

    with pytest.raises(RuntimeError), paused():
        raise RuntimeError("the fold failed")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
def test_a_pause_does_not_turn_on_a_collector_that_was_off() -> None:
    gc.disable()
    with paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
def test_a_replays_thresholds_hold_for_its_block_and_give_the_previous_ones_back() -> None:
    gc.set_threshold(700, 10, 10)

    with batch_thresholds(5000, concurrent_batches=1):
        assert gc.get_threshold()[0] == 20 * 5000 * 3
    assert gc.get_threshold() == (700, 10, 10)

    with pytest.raises(RuntimeError), batch_thresholds(5000, concurrent_batches=1):
        raise RuntimeError("the replay failed")
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("collector_restored")
def test_overlapping_replays_give_back_the_thresholds_the_first_found() -> None:
    gc.set_threshold(700, 10, 10)
    first, second = batch_thresholds(5000, 1), batch_thresholds(8000, 1)

    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first ends while the second still runs
    assert gc.get_threshold()[0] == 20 * 5000 * 3
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("collector_restored")
def test_overlapping_pauses_keep_the_collector_off_until_the_last_ends() -> None:
    gc.enable()
    first, second = paused(), paused()

    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
