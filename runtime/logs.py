"""Logging to stderr as text or JSON, each line carrying the current trace and span ids."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace as otel_trace


class _TraceContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = otel_trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"


def setup_logging(fmt: str = "text", level: str = "INFO", exported: logging.Handler | None = None) -> None:
    """Send the runtime's logs to stderr in `fmt` ("text" or "json"), and to `exported` (the
    OpenTelemetry logs bridge, which keeps each record's trace and span ids) when given."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceContext())
    handler.setFormatter(_JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler] if exported is None else [handler, exported]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the daemon's own
    # the writer bounds its steps in tokens on purpose (runtime/writer/limits.py judges the cut answer)
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
