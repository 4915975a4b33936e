"""The lag rule the live member and the ``status`` tool share, and what the loop keeps
to apply it."""

from consumer.core.lag import PartitionLag, records_behind, seconds_behind


def test_the_lag_in_records_is_the_high_watermark_less_the_next_offset_never_negative() -> None:
    assert records_behind(15, 10) == 5
    assert records_behind(3, 50) == 0  # a log younger than the offsets


def test_the_lag_in_seconds_is_the_age_to_the_millisecond_never_negative() -> None:
    assert seconds_behind(100.0, 69.12345) == 30.877
    assert seconds_behind(100.0, 100.5) == 0.0  # a producer's clock ahead of ours


def test_a_partition_s_lag_is_unknown_until_positioned_and_its_high_watermark_known() -> None:
    lag = PartitionLag()
    assert lag.behind(10, 100.0) is None
    lag.positioned(10, now=90.0)
    assert lag.behind(None, 100.0) is None
    assert lag.behind(10, 100.0) == (0, 0.0)  # caught up
    assert lag.behind(12, 100.0) == (2, 10.0)  # no batch in hand: since it last moved


def test_the_oldest_batch_in_hand_dates_the_lag_until_committed() -> None:
    lag = PartitionLag()
    lag.positioned(0, now=0.0)
    lag.taken(0, 50_000)
    lag.taken(5, 70_000)
    assert lag.behind(9, 100.0) == (9, 50.0)
    lag.committed(5, now=80.0, held=False)
    assert lag.behind(9, 100.0) == (4, 30.0)
    lag.hold(5, 70_000)
    lag.committed(9, now=90.0, held=True)  # the record it is held at stays the oldest
    assert lag.behind(12, 100.0) == (3, 30.0)
