"""Spans out of the process: the OpenTelemetry SDK, exporting over OTLP/HTTP (protobuf).

Started only when the settings ask for traces (``Settings.tracing_enabled``). The SDK and
the exporter read the standard ``OTEL_*`` variables themselves: the endpoint, headers,
timeout, compression and certificates, the service name and resource attributes, the
sampler, the span limits and the batch processor's delay and sizes.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from consumer import __version__

log = logging.getLogger(__name__)

SERVICE = "user-events-consumer"
# The version of the OpenTelemetry semantic conventions the spans follow (messaging and
# CloudEvents), named on every span as its instrumentation scope's schema.
SEMCONV_VERSION = "1.27.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"


class Tracing:
    """The tracer provider and its exporter, from start to the final flush."""

    def __init__(self) -> None:
        self._exporter = OTLPSpanExporter()
        limits = SpanLimits()
        self._provider = TracerProvider(
            resource=service_resource(), span_limits=limits, shutdown_on_exit=False
        )
        self._provider.add_span_processor(BatchSpanProcessor(self._exporter))
        # How many links a span keeps (OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default; None
        # when set to "unset").
        self.max_links: int | None = limits.max_links
        self.tracer: Tracer = self._provider.get_tracer(
            "consumer", __version__, schema_url=SCHEMA_URL
        )
        log.info("exporting traces over OTLP/HTTP", extra={"max_links": self.max_links})

    def shutdown(self, within_seconds: float) -> None:
        """Export the spans still queued, waiting at most ``within_seconds``: a receiver
        that does not answer is given up on, and what was queued for it is lost."""
        flushing = threading.Thread(target=self._provider.shutdown, name="otel-flush", daemon=True)
        flushing.start()
        flushing.join(within_seconds)
        if flushing.is_alive():
            log.warning(
                "the spans still queued were not exported in time; they are dropped",
                extra={"waited_seconds": round(within_seconds, 1)},
            )
            self._exporter.shutdown()  # type: ignore[no-untyped-call]  # ends its retries


def service_resource() -> Resource:
    """What the SDK reads from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, with this
    service's name where neither names one, and its version where they do not."""
    resource = Resource({SERVICE_VERSION: __version__}).merge(Resource.create())
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    return resource
