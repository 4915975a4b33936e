"""The batch-fed histogram exposes what prometheus_client's Histogram would for the same
observations: same buckets, counts and sum, and a _created series."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from consumer.edges.metrics import BatchHistogram

BUCKETS = (0.01, 0.25, 1, 5, 300)


def exposition(registry: CollectorRegistry) -> tuple[list[str], float]:
    """The lines but the _created and _sum ones, and the sum (added in another order, it
    may differ in its last digits)."""
    lines = generate_latest(registry).decode().splitlines()
    [total] = [float(line.split()[1]) for line in lines if line.startswith("age_seconds_sum ")]
    kept = [line for line in lines if "_created" not in line and "_sum " not in line]
    return kept, total


@given(st.lists(st.lists(st.floats(0, 1e6, allow_nan=False) | st.sampled_from(BUCKETS))))
def test_it_exposes_what_a_histogram_observed_one_by_one_would(batches: list[list[float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = BatchHistogram("age_seconds", "Age.", BUCKETS)
    ours.register(batched)
    single = Histogram("age_seconds", "Age.", buckets=BUCKETS, registry=theirs)
    for batch in batches:
        batched.observe_many(batch)
        for value in batch:
            single.observe(value)
    (our_lines, our_sum), (their_lines, their_sum) = exposition(ours), exposition(theirs)
    assert our_lines == their_lines
    assert math.isclose(our_sum, their_sum, rel_tol=1e-9)
    lines = generate_latest(ours).decode().splitlines()
    assert [line.split()[0] for line in lines if line.startswith("age_seconds_created ")] == [
        "age_seconds_created"
    ]
