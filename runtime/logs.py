"""Logging, configured with the standard library's `dictConfig`: stderr as text or JSON, optionally a
file rotated by size, a level per component, and each line's trace and span ids when there are some.

`PERFORMANCE` is the logger of each handled message's duration: quiet unless
`logging.performance_tracking` is on.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace as otel_trace

from runtime.terminal import printable

if TYPE_CHECKING:
    from runtime.config import Settings

PERFORMANCE = "reer.performance"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """The text format, each message with its control characters escaped (`printable`); a traceback
    that follows it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class TraceContext(logging.Filter):
    """Adds the current span's `trace_id` and `span_id` ("" outside a span), and `context`, the text
    format's ` [trace=… span=…]` (nothing outside a span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = otel_trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        span_id = format(context.span_id, "016x") if context.is_valid else ""
        shown = f" [trace={trace_id} span={span_id}]" if context.is_valid else ""
        record.__dict__.update(trace_id=trace_id, span_id=span_id, context=shown)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, trace and span ids, and the fields
    passed with `extra=`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "context"}
        entry |= {k: v for k, v in extra.items() if v != "" or k not in ("trace_id", "span_id")}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(context)s %(message)s"

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def logging_config(
    fmt: Literal["text", "json"] = "text",
    level: Level = "INFO",
    *,
    file: Path | None = None,
    max_bytes: int = 10_000_000,
    backups: int = 5,
    levels: dict[str, Level] | None = None,
    performance_tracking: bool = False,
) -> dict[str, Any]:
    """The `dictConfig` of these choices: stderr, and `file` rotated at `max_bytes` with `backups` kept."""
    handlers: dict[str, Any] = {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": fmt,
            "filters": ["trace"],
        }
    }
    if file is not None:
        handlers["file"] = {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(file),
            "maxBytes": max_bytes,
            "backupCount": backups,
            "encoding": "utf-8",
            "formatter": fmt,
            "filters": ["trace"],
        }
    quiet = {
        "httpx": "WARNING",  # a line per request would drown the daemon's own
        # the writer bounds its steps in tokens on purpose (runtime/writer/limits.py judges the cut answer)
        "dspy.clients.lm": "ERROR",
        PERFORMANCE: "INFO" if performance_tracking else "WARNING",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"trace": {"()": TraceContext}},
        "formatters": {"text": {"()": TextFormatter, "fmt": TEXT_FORMAT}, "json": {"()": JsonFormatter}},
        "handlers": handlers,
        "loggers": {name: {"level": lvl} for name, lvl in (quiet | (levels or {})).items()},
        "root": {"level": level, "handlers": list(handlers)},
    }


def setup_logging(
    fmt: Literal["text", "json"] = "text",
    level: Level = "INFO",
    exported: logging.Handler | None = None,
    **options: Any,
) -> None:
    """Configure logging (`logging_config`'s options), and also send records to `exported` (the
    OpenTelemetry logs bridge, which keeps each record's trace and span ids) when given."""
    file: Path | None = options.get("file")
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(logging_config(fmt, level, **options))
    if exported is not None:
        logging.getLogger().addHandler(exported)


def configure(settings: Settings, exported: logging.Handler | None = None) -> None:
    """Configure logging as `settings` say (`log_format`, `log_level` and the `logging` section)."""
    section = settings.logging
    setup_logging(
        settings.log_format,
        settings.log_level,
        exported,
        file=settings.log_file,
        max_bytes=section.max_bytes,
        backups=section.backups,
        levels=section.levels,
        performance_tracking=section.performance_tracking,
    )
