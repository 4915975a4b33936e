"""Every metric the service exports, defined once with its help text. Names are a contract."""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from consumer import __version__
from consumer.core.parking import PARKED_REASONS
from consumer.core.records import Outcome, Reason

# The operations whose transient failures are retried: the ``operation`` label.
RETRY_OPERATIONS = (
    "db_connect",
    "migrate",
    "kafka_connect",
    "load_offsets",
    "write_batch",
    "kafka_commit",
)

MESSAGES = Counter(
    "user_events_messages",
    "Records handled, by topic and outcome (applied, duplicate, stale, dead_lettered).",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "user_events_dead_letters",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "user_events_batch_size",
    "Records in a fetched batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000),
)
BATCH_DURATION = Histogram(
    "user_events_batch_duration_seconds",
    "Seconds from a batch's fetch to its offsets committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class BatchHistogram(Collector):
    """A histogram fed a batch of observations at once: one lock and one pass per batch,
    where ``Histogram.observe`` takes its lock and walks the buckets per value (it cost
    a few percent of the loop's CPU, once per event). Exposed as prometheus_client
    exposes a ``Histogram``: ``_bucket``, ``_count``, ``_sum`` and ``_created``."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.upper_bounds = (*sorted(buckets), math.inf)
        self.counts = [0] * len(self.upper_bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.created = time.time()
        self.lock = threading.Lock()  # collect() runs in the HTTP server's thread

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, found, total = self.upper_bounds, [0] * len(self.upper_bounds), 0.0
        for value in values:
            found[bisect_left(bounds, value)] += 1  # the first bound at or above: le
            total += value
        with self.lock:
            self.counts = [had + more for had, more in zip(self.counts, found, strict=True)]
            self.sum += total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counts, total = list(self.counts), self.sum
        family = HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[
                (floatToGoString(bound), cumulative)  # type: ignore[no-untyped-call]
                for bound, cumulative in zip(self.upper_bounds, accumulate(counts), strict=True)
            ],
            sum_value=total,
        )
        yield family
        yield GaugeMetricFamily(f"{self.name}_created", self.documentation, self.created)


EVENT_AGE = BatchHistogram(
    "user_events_event_age_seconds",
    "Seconds from an event's time to the commit of its effects.",
    # Fine around the 250 ms latency objective, so that its p99 can be read off.
    buckets=(
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.4,
        0.5,
        0.75,
        1,
        1.5,
        2,
        3,
        5,
        10,
        30,
        60,
        300,
        900,
        3600,
    ),
)
REGISTRY.register(EVENT_AGE)
CONSUMER_LAG = Gauge(
    "user_events_consumer_lag",
    "Records between the committed position and the high watermark.",
    ["topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "user_events_consumer_lag_seconds",
    "Age of the oldest record not yet applied (now less its Kafka timestamp); 0 when caught up.",
    ["topic", "partition"],
)
DLQ_GUARD_TRIPPED = Gauge(
    "user_events_dlq_guard_tripped",
    "1 while the dead-letter storm guard holds the partition, else 0.",
    ["topic", "partition"],
)
OFFSET_PAST_END = Gauge(
    "user_events_offset_past_end",
    "1 while the partition is held because its stored offset lies past the end of its log.",
    ["topic", "partition"],
)
BUILD_INFO = Gauge("user_events_build_info", "Always 1, labelled with the version.", ["version"])
RETRIES = Counter(
    "user_events_retries",
    "Retries of transient failures, by operation.",
    ["operation"],
)
REBALANCES = Counter("user_events_rebalances", "Partition assignments received.")
PARTITIONS_PAUSED = Gauge("user_events_partitions_paused", "Partitions paused by the consumer.")
LAST_COMMIT = Gauge(
    "user_events_last_commit_timestamp_seconds", "Unix time of the last committed batch."
)
DB_POOL_CONNECTIONS = Gauge(
    "user_events_db_pool_connections", "Connections of the database pool, by state.", ["state"]
)
DB_UP = Gauge("user_events_db_up", "1 when PostgreSQL answers, else 0.")
KAFKA_UP = Gauge("user_events_kafka_up", "1 when the broker answers, else 0.")
LOG_OLDEST_AGE = Gauge(
    "user_events_log_oldest_age_seconds",
    "Age of the oldest row the event log keeps (read from its oldest day); 0 when empty.",
)
LOG_RETENTION = Gauge(
    "user_events_log_retention_seconds",
    "LOG_RETENTION in seconds: how long the event log keeps a row; 0 when it keeps all.",
)
ERASURE_TRIGGERS = ("event", "request")


# Parking (docs/parking.md). The gauges are read from parked_events by every replica's
# sweep: each replica reports the same figure (aggregate with max, not sum).


class ParkedNow(Collector):
    """``user_events_parked`` and ``user_events_parked_oldest_age_seconds``: what waits
    in parked_events, as the last sweep read it. A collector rather than a Gauge: the
    registry would refuse a gauge named as the ``user_events_parked_total`` counter's
    family, though the text format names them apart."""

    def __init__(self) -> None:
        self.rows = 0
        self.oldest_age_seconds = 0.0

    def update(self, rows: int, oldest_age_seconds: float) -> None:
        self.rows, self.oldest_age_seconds = rows, oldest_age_seconds

    def describe(self) -> list[Metric]:
        return []  # so that the registry does not reserve the counter's family name

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "user_events_parked", "Events parked in PostgreSQL, waiting to heal.", self.rows
        )
        yield GaugeMetricFamily(
            "user_events_parked_oldest_age_seconds",
            "Age of the oldest parked event (0 when none is parked).",
            self.oldest_age_seconds,
        )


PARKED = ParkedNow()
REGISTRY.register(PARKED)
PARK_TTL = Gauge(
    "user_events_park_ttl_seconds", "PARK_TTL: how long a parked event may wait (0: no parking)."
)
PARKED_TOTAL = Counter(
    "user_events_parked",
    "Events this replica parked instead of dead-lettering, by reason.",
    ["reason"],
)
HEALED_TOTAL = Counter(
    "user_events_healed",
    "Parked events applied (or found stale) when what they waited for "
    "landed, by the reason they were parked for.",
    ["reason"],
)
PARK_EXPIRED_TOTAL = Counter(
    "user_events_park_expired",
    "Parked events dead-lettered after waiting PARK_TTL, by reason.",
    ["reason"],
)


class ErasureTotals(Collector):
    """``user_events_erasures_total{trigger}``: the erasures recorded in the database, by
    what asked for them (a ``user.deleted``, or an ``erase`` request from outside Kafka).
    Read from the ``erasures`` table, which every replica and the ``erase`` tool write:
    each replica reports the same total (aggregate with ``max``, not ``sum``)."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(ERASURE_TRIGGERS, 0)

    def update(self, counts: Mapping[str, int]) -> None:
        for trigger in ERASURE_TRIGGERS:
            self._counts[trigger] = counts.get(trigger, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "user_events_erasures",
            "Erasures of a user's personal data recorded in the database, by trigger.",
            labels=["trigger"],
        )
        for trigger, count in self._counts.items():
            family.add_metric([trigger], count)
        yield family


ERASURES = ErasureTotals()
REGISTRY.register(ERASURES)


def export_known_series(topic: str) -> None:
    """Every labelled counter whose label values are known in advance, at 0 from the
    first scrape: a ``rate()`` or an alert on a series that appears only with its first
    event sees nothing before it."""
    for outcome in Outcome:
        MESSAGES.labels(topic, str(outcome))
    for reason in Reason:
        DEAD_LETTERS.labels(str(reason))
    for operation in RETRY_OPERATIONS:
        RETRIES.labels(operation)
    for state in ("in_use", "idle"):
        DB_POOL_CONNECTIONS.labels(state)
    for parked_for in PARKED_REASONS:
        for counter in (PARKED_TOTAL, HEALED_TOTAL, PARK_EXPIRED_TOTAL):
            counter.labels(parked_for)


def export_build_info() -> None:
    """``user_events_build_info{version}`` at 1: which version each replica runs."""
    BUILD_INFO.labels(__version__).set(1)


def count_retry(operation: str, exc: BaseException | None = None) -> None:
    """A tenacity ``on_retry`` hook: one more retry of ``operation``."""
    RETRIES.labels(operation).inc()
