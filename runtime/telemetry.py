"""OpenTelemetry set-up: an SDK tracer provider, exporting over OTLP when the standard variables ask.

Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set;
`OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` picks `grpc` or `http/protobuf` (the default, as the
specification says). The SDK itself reads `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and the rest.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from runtime import __version__


def otlp_exporter() -> SpanExporter | None:
    """The exporter the environment asks for, or None when no endpoint is set."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")


def setup_tracing() -> TracerProvider:
    """Install the global tracer provider. Spans always get ids (for logs and traces); they are
    exported only when an OTLP endpoint is configured."""
    service = os.environ.get("OTEL_SERVICE_NAME") or "reer-runtime"
    resource = Resource.create({"service.name": service, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    exporter = otlp_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
