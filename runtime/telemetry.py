"""OpenTelemetry set-up: traces, metrics and logs, exported as the standard variables ask.

- `OTEL_SDK_DISABLED=true` turns the SDK off: nothing is recorded or exported (records then hold
  the all-zero trace id, and log lines no ids).
- `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`, `OTEL_LOGS_EXPORTER`: `otlp`, `console` (to
  stderr: stdout carries drafts and JSON) or `none`, comma-separated. Unset, a signal goes over OTLP
  when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or the per-signal one) and
  nowhere otherwise: nothing leaves the process unasked.
- `OTEL_EXPORTER_OTLP_(TRACES_|METRICS_|LOGS_)PROTOCOL` picks `grpc` or `http/protobuf` (the
  default, as the specification says).
- `OTEL_SERVICE_NAME` or `service.name` in `OTEL_RESOURCE_ATTRIBUTES` names the service
  (`reer-runtime` otherwise). The SDK itself reads `OTEL_TRACES_SAMPLER`, `OTEL_METRIC_EXPORT_INTERVAL`
  and the rest.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from runtime import __version__
from runtime.errors import ConfigError

Signal = Literal["TRACES", "METRICS", "LOGS"]
EXPORTERS = ("otlp", "console", "none")


@dataclass
class Telemetry:
    """The installed providers, the in-process reader the stats snapshot is made from, and the
    handler that bridges log records to OpenTelemetry (None when logs are not exported)."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    stats_reader: InMemoryMetricReader
    logger_provider: LoggerProvider
    log_handler: logging.Handler | None

    def shutdown(self) -> None:
        """Flush and stop every exporter."""
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


def exporters(signal: Signal) -> set[str]:
    """The exporters asked for `signal`; raises `ConfigError` for a name that is not one."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return set()
    value = os.environ.get(f"OTEL_{signal}_EXPORTER")
    if value is None:
        endpoint = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return {"otlp"} if endpoint else set()
    names = {name.strip().lower() for name in value.split(",") if name.strip()}
    if unknown := names - set(EXPORTERS):
        raise ConfigError(f"OTEL_{signal}_EXPORTER={value!r}: {', '.join(sorted(unknown))} is not one of {EXPORTERS}")
    return names - {"none"}


def _protocol(signal: Signal) -> str:
    """The OTLP protocol configured for `signal`."""
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")
    return protocol


def _otlp(signal: Signal) -> Any:
    """An OTLP exporter of `signal` over the configured protocol (its modules imported only when used)."""
    grpc = _protocol(signal) == "grpc"
    if signal == "TRACES":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

            return GrpcSpans()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        return HttpSpans()
    if signal == "METRICS":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

            return GrpcMetrics()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        return HttpMetrics()
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

        return GrpcLogs()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    return HttpLogs()


def resource() -> Resource:
    """The service's resource: `service.name` from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
    when either names it (the SDK reads both), else `reer-runtime`; the version; and, unless given,
    `service.instance.id` as HOST-PID, which tells a coordinator's and each worker's metrics apart."""
    given = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    attributes = {"service.version": __version__}
    if "OTEL_SERVICE_NAME" not in os.environ and "service.name=" not in given:
        attributes["service.name"] = "reer-runtime"
    if "service.instance.id=" not in given:
        attributes["service.instance.id"] = f"{socket.gethostname()}-{os.getpid()}"
    return Resource.create(attributes)


_installed: list[Telemetry] = []


def process_telemetry() -> Telemetry:
    """The providers this process installed, installing them (no Prometheus endpoint) on first use.

    OpenTelemetry's global providers can be set once a process: the Python API calls this for each
    `Runtime` it opens, and the command line calls `setup_telemetry` once."""
    return _installed[0] if _installed else setup_telemetry()


def setup_telemetry(metrics_port: int | None = None) -> Telemetry:
    """Install the global tracer, meter and logger providers.

    Unless the SDK is disabled, spans get ids (for logs and stores) and metrics feed the stats snapshot; they
    leave the process only through the exporters asked for (see the module's docstring), and
    metrics also through a Prometheus scrape endpoint on 127.0.0.1:`metrics_port` when one is given.
    """
    service = resource()
    tracer_provider = TracerProvider(resource=service)
    for name in exporters("TRACES"):
        tracer_provider.add_span_processor(
            BatchSpanProcessor(_otlp("TRACES") if name == "otlp" else ConsoleSpanExporter(out=sys.stderr))
        )
    otel_trace.set_tracer_provider(tracer_provider)

    stats_reader = InMemoryMetricReader()
    readers: list[MetricReader] = [stats_reader]
    for name in exporters("METRICS"):
        exporter = _otlp("METRICS") if name == "otlp" else ConsoleMetricExporter(out=sys.stderr)
        readers.append(PeriodicExportingMetricReader(exporter))
    if metrics_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
        readers.append(PrometheusMetricReader())
    meter_provider = MeterProvider(resource=service, metric_readers=readers)
    metrics.set_meter_provider(meter_provider)

    logger_provider = LoggerProvider(resource=service)
    logs = exporters("LOGS")
    for name in logs:
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(_otlp("LOGS") if name == "otlp" else ConsoleLogExporter(out=sys.stderr))
        )
    handler = LoggingHandler(logger_provider=logger_provider) if logs else None
    installed = Telemetry(tracer_provider, meter_provider, stats_reader, logger_provider, handler)
    _installed[:] = [installed]
    return installed
