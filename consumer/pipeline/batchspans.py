"""One span per batch: from the moment it is taken to its commit, or its drop.

The spans follow the OpenTelemetry semantic conventions 1.27.0 for messaging: a batch is a
"process" operation, so its span is of kind CONSUMER, named ``process {topic}``, with the
``messaging.*`` attributes of the topic, the consumer group and the batch. It links to the
trace each event came with (the CloudEvents distributed-tracing extension, see
``core.tracecontext``), each link naming the event by its CloudEvents attributes (the
CloudEvents conventions) and its place in Kafka, up to the SDK's limit of links a span
keeps (OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default). What became of the records is counted
on the span when its transaction has committed.

Without tracing, none of this runs: the loop checks once per batch whether it has a
``BatchSpans``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from consumer.core.records import KafkaRecord, Outcome
from consumer.core.tracecontext import creation_context
from consumer.pipeline.batches import CommittedBatch, PreparedBatch

PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
MESSAGE_COUNT = "messaging.batch.message_count"
# This service's own attributes: the partitions of the batch, whether the link limit
# stopped the links before the batch's last record, what became of its records.
PARTITIONS = "user_events.batch.partitions"
LINKS_CAPPED = "user_events.batch.links_capped"
DROPPED = "user_events.batch.dropped"
OUTCOMES = {
    Outcome.APPLIED: "user_events.batch.applied",
    Outcome.DUPLICATE: "user_events.batch.duplicate",
    Outcome.STALE: "user_events.batch.stale",
    Outcome.DEAD_LETTERED: "user_events.batch.dead_lettered",
    Outcome.PARKED: "user_events.batch.parked",
}
_propagator = TraceContextTextMapPropagator()
# What ``retrying`` calls before it tries an operation again.
OnRetry = Callable[[str, BaseException], None]


class BatchSpans:
    """Starts the span of each batch, linked to its events' traces."""

    def __init__(self, tracer: Tracer, topic: str, group_id: str, max_links: int | None) -> None:
        self._tracer = tracer
        self._name = f"process {topic}"
        self._attributes: dict[str, AttributeValue] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group_id,
        }
        self._max_links = max_links

    def start(self, batch: PreparedBatch) -> Span:
        """The span of ``batch``, which started at ``batch.started`` (monotonic time)."""
        links, capped = self.links(batch.records)
        partitions = sorted({partition for _, partition in batch.next_offsets})
        attributes = {
            **self._attributes,
            MESSAGE_COUNT: len(batch.records),
            PARTITIONS: partitions,
        }
        if len(partitions) == 1:
            attributes[PARTITION] = str(partitions[0])
        if capped:
            attributes[LINKS_CAPPED] = True
        waited_ns = int((time.monotonic() - batch.started) * 1e9)
        return self._tracer.start_span(
            self._name,
            context=Context(),  # a root: the events' traces are links, not parents
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            start_time=time.time_ns() - waited_ns,
        )

    def links(self, records: Sequence[KafkaRecord]) -> tuple[list[Link], bool]:
        """A link per record that carries a valid trace context, at most ``max_links``;
        and whether records were left unread for want of room."""
        links: list[Link] = []
        for record in records:
            if len(links) == self._max_links:
                return links, True
            found = creation_context(record)
            if found is None:
                continue
            carrier = {"traceparent": found.traceparent}
            if found.tracestate is not None:
                carrier["tracestate"] = found.tracestate
            linked = get_current_span(_propagator.extract(carrier)).get_span_context()
            if linked.is_valid:
                attributes: dict[str, AttributeValue] = {
                    **found.attributes,
                    PARTITION: str(record.partition),
                    OFFSET: record.offset,
                }
                links.append(Link(linked, attributes))
        return links, False


def end_committed(span: Span, committed: CommittedBatch, outcomes: Counter[Outcome]) -> None:
    """End the span of a batch whose transaction committed, when it committed, with the
    number of records applied, duplicate, stale and dead-lettered."""
    counts = {**outcomes, Outcome.DEAD_LETTERED: len(committed.dead)}
    span.set_attributes({name: counts.get(outcome, 0) for outcome, name in OUTCOMES.items()})
    span.end(end_time=int(committed.committed_at_wall * 1e9))


def end_dropped(span: Span) -> None:
    """End the span of a batch dropped before its commit (a rebalance came first, or
    another member stored its offsets): its records are fetched and written again."""
    span.set_attribute(DROPPED, True)
    span.end()


def recording_retries(span: Span, on_retry: OnRetry) -> OnRetry:
    """``on_retry``, which also records each failed write of the batch, tried again, as
    an exception event on its span."""

    def on_retry_recorded(operation: str, exc: BaseException) -> None:
        span.record_exception(exc)
        on_retry(operation, exc)

    return on_retry_recorded


def end_failed(span: Span, exc: BaseException) -> None:
    """End the span of a batch whose write failed for good (the loop stops on it)."""
    span.record_exception(exc)
    span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__qualname__}")
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.end()
