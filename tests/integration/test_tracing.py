"""Traces across the topic: the real service exports a span per batch over OTLP/HTTP to a
real receiver, linked to the trace each event came with; without the OpenTelemetry
settings it sends nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from typing import Any

import pytest
from aiokafka import TopicPartition
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from user_events_schemas import binary_record, structured_record

from consumer.core.records import KafkaRecord
from consumer.edges.tracing import SCHEMA_URL, Tracing
from consumer.pipeline.batches import PreparedBatch
from consumer.pipeline.batchspans import BatchSpans, end_dropped
from tests import factories
from tests.integration.otlp import OtlpReceiver, attributes
from tests.integration.support import (
    eventually,
    headers_of,
    logged_is,
    new_settings,
    publish,
    read_topic,
    start_service_process,
)


def traceparent() -> tuple[str, str, str]:
    """A W3C traceparent of a sampled span, with its trace id and span id in hex."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def created(user: str) -> dict[str, Any]:
    return factories.created(user, source="/signup", event_id=f"{user}-1")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(timeout=20) == 0


async def test_each_batch_is_a_consumer_span_linked_to_its_events_traces_in_both_modes(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database, partitions=2)
    messages, linked = [], {}
    for n in range(1, 7):
        event = created(f"u{n}")
        context, trace_id, span_id = traceparent()
        structured = n % 2 == 1
        record = (structured_record if structured else binary_record)(
            event | {"traceparent": context}
        )
        messages.append(record)
        linked[trace_id, span_id] = event
    messages.append(structured_record(created("u7")))  # no trace context: no link
    binary_poison, bp_trace, bp_span = traceparent()
    key, value, headers = binary_record(created("u8") | {"traceparent": binary_poison})
    headers = [(n, b"user.unknown" if n == "ce_type" else v) for n, v in headers]
    messages.append((key, value, headers))
    structured_poison, sp_trace, sp_span = traceparent()
    bad_email = created("u9") | {
        "traceparent": structured_poison,
        "data": {"email": "x", "name": "N"},
    }
    messages.append(structured_record(bad_email))
    await publish(bootstrap_servers, settings.kafka_topic, messages)

    with OtlpReceiver() as receiver:
        process = start_service_process(
            settings,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_SERVICE_NAME="user-events-under-test",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        )
        try:
            await eventually(lambda: logged_is(database, 7))

            async def every_record_in_a_committed_span() -> bool:
                return sum(batch_sizes(committed(receiver.spans()))) == len(messages)

            await eventually(every_record_in_a_committed_span, timeout=15)
            letters = await read_topic(bootstrap_servers, settings.kafka_dlq_topic, 2)
        finally:
            stop(process)

    assert set(receiver.paths) == {"/v1/traces"}
    for span in receiver.spans():
        assert span.name == f"process {settings.kafka_topic}"
        assert span.kind == OtlpSpan.SPAN_KIND_CONSUMER
        assert span.parent_span_id == b""
        got = attributes(span.attributes)
        assert {k: got[k] for k in COMMON} == {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": settings.kafka_topic,
            "messaging.consumer.group.name": settings.kafka_group_id,
        }
        assert set(got["user_events.batch.partitions"]) <= {0, 1}
        assert span.end_time_unix_nano >= span.start_time_unix_nano
    spans = committed(receiver.spans())
    totals = {
        outcome: sum(attributes(s.attributes)[f"user_events.batch.{outcome}"] for s in spans)
        for outcome in ("applied", "duplicate", "stale", "dead_lettered")
    }
    assert totals == {"applied": 7, "duplicate": 0, "stale": 0, "dead_lettered": 2}

    links = {
        (link.trace_id.hex(), link.span_id.hex()): attributes(link.attributes)
        for span in spans
        for link in span.links
    }
    assert set(links) == {*linked, (bp_trace, bp_span), (sp_trace, sp_span)}
    for ids, event in linked.items():
        link = links[ids]
        assert {k: v for k, v in link.items() if k.startswith("cloudevents.")} == {
            "cloudevents.event_id": event["id"],
            "cloudevents.event_source": "/signup",
            "cloudevents.event_type": "user.created",
            "cloudevents.event_subject": event["subject"],
            "cloudevents.event_spec_version": "1.0",
        }
        assert link["messaging.destination.partition.id"] in ("0", "1")
        assert isinstance(link["messaging.kafka.offset"], int)
    assert links[bp_trace, bp_span]["cloudevents.event_type"] == "user.unknown"
    assert links[sp_trace, sp_span]["cloudevents.event_id"] == "u9-1"

    resource = attributes(next(receiver.resource_spans()).resource.attributes)
    assert resource["service.name"] == "user-events-under-test"
    assert resource["deployment.environment"] == "test"
    assert resource["service.version"]
    scope = next(receiver.resource_spans()).scope_spans[0]
    assert scope.schema_url == SCHEMA_URL

    # The dead letters keep the trace context they came with, as the record held it.
    binary = next(letter for letter in letters if "ce_specversion" in headers_of(letter))
    structured = next(letter for letter in letters if letter is not binary)
    assert headers_of(binary)["ce_traceparent"] == binary_poison.encode()
    assert json.loads(structured.value)["traceparent"] == structured_poison


def committed(spans: list[OtlpSpan]) -> list[OtlpSpan]:
    """The spans of batches that committed: the others (a batch taken before its
    partition was positioned, and dropped) are fetched and written again."""
    return [s for s in spans if "user_events.batch.dropped" not in attributes(s.attributes)]


def batch_sizes(spans: list[OtlpSpan]) -> list[int]:
    return [attributes(s.attributes)["messaging.batch.message_count"] for s in spans]


COMMON = (
    "messaging.system",
    "messaging.operation.name",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.consumer.group.name",
)


async def test_without_the_opentelemetry_settings_nothing_is_sent_even_to_the_default_port(
    bootstrap_servers: str, database: str
) -> None:
    """The receiver listens where an SDK left to its defaults would send its spans
    (localhost:4318); the service runs with other OTEL_* variables but no exporter."""
    settings = await new_settings(bootstrap_servers, database, partitions=1)
    context, _, _ = traceparent()
    messages = [structured_record(created(f"u{n}")) for n in range(3)]
    messages.append(binary_record(created("u9") | {"traceparent": context}))
    await publish(bootstrap_servers, settings.kafka_topic, messages)
    try:
        receiver = OtlpReceiver(port=4318)
    except OSError:
        pytest.skip("port 4318 is taken")
    with receiver:
        process = start_service_process(
            settings, OTEL_SERVICE_NAME="quiet", OTEL_BSP_SCHEDULE_DELAY="10"
        )
        try:
            await eventually(lambda: logged_is(database, 4))
            await asyncio.sleep(0.3)
        finally:
            stop(process)  # a tracer provider would flush at exit
    assert receiver.requests == []


def test_a_span_links_at_most_the_sdks_link_limit_and_says_it_left_records_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "3")
        tracing = Tracing()
        spans = BatchSpans(tracing.tracer, "t", "g", tracing.max_links)
        contexts = [traceparent() for _ in range(5)]
        batch = PreparedBatch(0, time.monotonic())
        for offset, (context, _, _) in enumerate(contexts):
            key, value, headers = binary_record(created(f"u{offset}") | {"traceparent": context})
            batch.records.append(KafkaRecord("t", 4, offset, 0, key, value, tuple(headers)))
            batch.next_offsets[TopicPartition("t", 4)] = offset + 1
        end_dropped(spans.start(batch))
        tracing.shutdown(5.0)
    [span] = receiver.spans()
    assert tracing.max_links == 3
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in span.links] == [
        (trace_id, span_id) for _, trace_id, span_id in contexts[:3]
    ]
    assert span.dropped_links_count == 0
    got = attributes(span.attributes)
    assert got["user_events.batch.links_capped"] is True
    assert got["user_events.batch.dropped"] is True
    assert got["messaging.destination.partition.id"] == "4"
    assert got["messaging.batch.message_count"] == 5
