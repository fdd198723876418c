"""OpenTelemetry set-up: traces and metrics, exported over OTLP when the standard variables ask.

Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `..._TRACES_ENDPOINT`,
`..._METRICS_ENDPOINT`) is set; `OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)PROTOCOL` picks `grpc` or
`http/protobuf` (the default, as the specification says). The SDK itself reads `OTEL_SERVICE_NAME`,
`OTEL_TRACES_SAMPLER`, `OTEL_METRIC_EXPORT_INTERVAL` and the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from runtime import __version__

Signal = Literal["TRACES", "METRICS"]


@dataclass
class Telemetry:
    """The installed providers, and the in-process reader the stats snapshot is made from."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    stats_reader: InMemoryMetricReader

    def shutdown(self) -> None:
        """Flush and stop every exporter."""
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


def _protocol(signal: Signal) -> str | None:
    """The OTLP protocol configured for `signal`, or None when no endpoint is set."""
    if not (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")
    return protocol


def setup_telemetry(metrics_port: int | None = None) -> Telemetry:
    """Install the global tracer and meter providers.

    Spans always get ids (for logs and traces) and metrics always feed the stats snapshot; they
    leave the process only over OTLP when configured, and metrics also through a Prometheus scrape
    endpoint on 127.0.0.1:`metrics_port` when one is given.
    """
    service = os.environ.get("OTEL_SERVICE_NAME") or "reer-runtime"
    resource = Resource.create({"service.name": service, "service.version": __version__})

    tracer_provider = TracerProvider(resource=resource)
    if (protocol := _protocol("TRACES")) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        tracer_provider.add_span_processor(BatchSpanProcessor(GrpcSpans()))
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        tracer_provider.add_span_processor(BatchSpanProcessor(HttpSpans()))
    trace.set_tracer_provider(tracer_provider)

    stats_reader = InMemoryMetricReader()
    readers: list[MetricReader] = [stats_reader]
    if (protocol := _protocol("METRICS")) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        readers.append(PeriodicExportingMetricReader(GrpcMetrics()))
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        readers.append(PeriodicExportingMetricReader(HttpMetrics()))
    if metrics_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
        readers.append(PrometheusMetricReader())
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider, stats_reader)
