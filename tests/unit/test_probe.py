"""The limit probe's data and report, without I/O: the rows built in advance are the
service's, batch by batch, and the report says how close the service comes to the parts."""

from __future__ import annotations

from collections import Counter

import pytest
from user_events_devtools.drains import DrainResult
from user_events_devtools.probe import Probe, ProbePart, probe_lines
from user_events_devtools.probedata import in_batches, service_rows, topic_records

from consumer.core.records import KafkaRecord


def _records(partition: int, count: int) -> list[KafkaRecord]:
    return [KafkaRecord("t", partition, offset, 0, b"k", b"v", ()) for offset in range(count)]


def test_batches_take_each_partition_in_turn_in_order_and_never_exceed_the_batch_size() -> None:
    placed = {0: _records(0, 5), 1: _records(1, 2), 2: _records(2, 4)}

    batches = [[(r.partition, r.offset) for r in batch] for batch in in_batches(placed, 2)]

    assert batches == [
        [(0, 0), (0, 1)],
        [(1, 0), (1, 1)],
        [(2, 0), (2, 1)],
        [(0, 2), (0, 3)],
        [(2, 2), (2, 3)],
        [(0, 4)],
    ]


def test_the_data_set_is_placed_by_key_with_offsets_counted_per_partition() -> None:
    placed = topic_records("t", 6, 2_000, 300)

    assert sum(len(records) for records in placed.values()) == 2_000
    partitions_of_key: dict[bytes | None, set[int]] = {}
    for partition, records in placed.items():
        assert [r.offset for r in records] == list(range(len(records)))
        for record in records:
            partitions_of_key.setdefault(record.key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())


def test_each_batch_logs_its_applied_and_stale_events_and_writes_each_user_once() -> None:
    placed = topic_records("t", 6, 3_000, 300)

    batches = service_rows(in_batches(placed, 200), 1024 * 1024)

    logged = [row for batch in batches for row in batch.log]
    assert 2_000 < len(logged) < 3_000  # not the poison nor the duplicates
    assert len({(row[0], row[1]) for row in logged}) == len(logged)
    assert {row[10] for row in logged} <= {"applied", "stale"}
    for batch in batches:
        assert max(Counter(row[0] for row in batch.users).values()) == 1


def _part(name: str, events_per_second: float, postgres: float | None = 0.1) -> ProbePart:
    return ProbePart(
        name,
        1_000,
        1_000,
        1_000 / events_per_second,
        events_per_second,
        0.01,
        postgres,
        0.001,
        stored=None if name == "kafka drain" else 1_000,
    )


def test_the_report_gives_the_rate_of_the_parts_one_after_another_and_the_services_share() -> None:
    probe = Probe(
        5_000,
        2,
        [
            _part("kafka drain", 100_000, None),
            _part("log COPY", 50_000),
            _part("users upsert", 100_000),
        ],
    )
    service = DrainResult(
        "service", 1_000, 0.1, 10_000.0, cpu_seconds=0.04, postgres_cpu_seconds=0.02
    )

    lines = probe_lines(probe, service)

    assert probe.in_series_events_per_second == pytest.approx(25_000)
    assert probe.postgres_read and probe.broker_read
    row = next(line for line in lines if line.startswith("log COPY"))
    assert row.split()[-3:] == ["10.0", "100.0", "1.0"]
    assert "the parts one after another: 25,000 events/s" in "\n".join(lines)
    assert any(line.startswith("service: 10,000 events/s (40% of the parts") for line in lines)
