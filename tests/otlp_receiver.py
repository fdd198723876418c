"""A real OTLP receiver on loopback (HTTP/protobuf and gRPC) that decodes what it is sent: traces,
metrics and logs over HTTP, traces over gRPC."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    attributes: dict[str, Any]
    service: str
    status_code: int
    start_ns: int


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass
class Receiver:
    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    """The last cumulative value of each counter received, summed over its attribute sets."""
    points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """The attributes of every data point received, by metric name."""
    services: set[str] = field(default_factory=set)
    """The `service.name` of every resource that sent metrics or logs."""
    logs: list[dict[str, Any]] = field(default_factory=list)
    """Every log record received: its body, severity, trace and span ids, and attributes."""
    raw: list[bytes] = field(default_factory=list)
    """Every request body received over HTTP, as sent."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                kind=KINDS.get(s.kind, str(s.kind)),
                                attributes={a.key: _value(a.value) for a in s.attributes},
                                service=str(resource.get("service.name")),
                                status_code=s.status.code,
                                start_ns=s.start_time_unix_nano,
                            )
                        )

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.lock:
            for resource_metrics in request.resource_metrics:
                resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
                self.services.add(str(resource.get("service.name")))
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        self.points.setdefault(metric.name, []).extend(
                            {a.key: _value(a.value) for a in p.attributes} for p in getattr(metric, kind).data_points
                        )
                        if kind == "sum":
                            points = metric.sum.data_points
                            self.sums[metric.name] = sum(p.as_int or p.as_double for p in points)

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        with self.lock:
            for resource_logs in request.resource_logs:
                resource = {a.key: _value(a.value) for a in resource_logs.resource.attributes}
                self.services.add(str(resource.get("service.name")))
                for scope_logs in resource_logs.scope_logs:
                    self.logs += [
                        {
                            "body": _value(r.body),
                            "severity": r.severity_text,
                            "trace_id": r.trace_id.hex(),
                            "span_id": r.span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in r.attributes},
                        }
                        for r in scope_logs.log_records
                    ]


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    """OTLP over HTTP/protobuf at `receiver.endpoint` (traces and metrics)."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.raw.append(body)
            if self.path == "/v1/traces":
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                metrics_request = metrics_service_pb2.ExportMetricsServiceRequest()
                metrics_request.ParseFromString(body)
                receiver.add_metrics(metrics_request)
                payload = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            elif self.path == "/v1/logs":
                logs_request = logs_service_pb2.ExportLogsServiceRequest()
                logs_request.ParseFromString(body)
                receiver.add_logs(logs_request)
                payload = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def grpc_receiver() -> Iterator[Receiver]:
    """OTLP over gRPC at `receiver.endpoint`."""
    receiver = Receiver()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            receiver.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    receiver.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.stop(grace=None)
