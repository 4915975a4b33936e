"""The benchmark's data set and its histogram arithmetic, without I/O."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from user_events_devtools.benchdata import bench_messages
from user_events_devtools.histograms import histogram_quantile
from user_events_devtools.probedata import decided_batches, in_batches, topic_records
from user_events_devtools.stages import STAGES, stage_costs

from consumer.core.records import KafkaRecord
from consumer.core.tracecontext import creation_context


def test_with_traceparents_each_event_carries_a_trace_context_and_nothing_else_changes() -> None:
    plain = list(bench_messages(2_000, 500))
    traced = list(bench_messages(2_000, 500, traceparents=True))
    carried = 0
    for (key, value, headers), (_, traced_value, _) in zip(plain, traced, strict=True):
        if traced_value == value:
            continue  # poison
        event = json.loads(traced_value or b"")
        traceparent = event.pop("traceparent")
        assert event == json.loads(value or b"")
        record = KafkaRecord("t", 0, 0, 0, key, traced_value, tuple(headers))
        found = creation_context(record)
        assert found is not None
        assert found.traceparent == traceparent
        carried += 1
    assert carried > 0.95 * len(plain)


def test_the_mix_has_the_issues_proportions_and_is_reproducible() -> None:
    messages = list(bench_messages(20_000, 5_000))
    assert messages == list(bench_messages(20_000, 5_000))
    kinds: Counter[str] = Counter()
    seen: set[bytes] = set()
    for _, value, _ in messages:
        assert value is not None
        try:
            kind = json.loads(value)["type"]
        except ValueError:
            kind = "poison"
        if kind not in ("user.created", "user.updated", "user.deleted"):
            kinds["poison"] += 1
        elif value in seen:
            kinds["duplicate"] += 1
        else:
            seen.add(value)
            kinds[kind] += 1
    share = {kind: n / len(messages) for kind, n in kinds.items()}
    assert share["user.created"] == pytest.approx(0.20, abs=0.02)
    assert share["user.updated"] == pytest.approx(0.65, abs=0.02)
    assert share["user.deleted"] == pytest.approx(0.05, abs=0.01)
    assert share["duplicate"] == pytest.approx(0.07, abs=0.01)
    assert share["poison"] == pytest.approx(0.03, abs=0.01)


def test_histogram_quantile_interpolates_within_a_bucket_like_promql() -> None:
    text = "\n".join(
        [
            'h_bucket{le="0.1"} 50.0',
            'h_bucket{le="0.2"} 90.0',
            'h_bucket{le="0.4"} 100.0',
            'h_bucket{le="+Inf"} 100.0',
        ]
    )
    assert histogram_quantile(text, "h", 0.5) == pytest.approx(0.1)
    assert histogram_quantile(text, "h", 0.7) == pytest.approx(0.15)
    assert histogram_quantile(text, "h", 0.95) == pytest.approx(0.3)
    assert histogram_quantile("", "h", 0.5) is None


def test_the_bench_measures_each_pure_stage_in_microseconds_per_record() -> None:
    costs = stage_costs(600, 50, batch_size=100, max_bytes=1024 * 1024, repeats=1)
    assert list(costs) == list(STAGES)
    # Measurements, not speed targets.
    assert all(cost > 0 and math.isfinite(cost) for cost in costs.values()), costs


def test_the_stages_see_batches_as_the_service_does() -> None:
    """Later batches find their users' states, and logged keys among their events (the
    mix's duplicates), so that planning and the look-up rules do the service's work."""
    placed = topic_records("bench", 6, 2_000, 100)
    batches = decided_batches(list(in_batches(placed, 100)), 1024 * 1024)
    assert len(batches) > 6
    assert sum(len(b.states_before) for b in batches) > 100
    assert sum(len(b.logged_keys) for b in batches) > 10
    assert all(len(b.read_rows) == len(b.states_before) for b in batches)
    assert all(b.plan.verdicts for b in batches)
