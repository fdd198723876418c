"""A span for each DSPy module call, inside the trace of the event that caused it."""

from __future__ import annotations

from contextvars import Token
from typing import Any

from dspy.utils.callback import BaseCallback
from opentelemetry import context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

tracer = otel_trace.get_tracer("reer-runtime.writer")


class ModuleSpans(BaseCallback):
    """Opens a span when a DSPy module (the writer, each of its predictors) starts; ends it when it ends."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[otel_trace.Span, Token[Context]]] = {}

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        name = type(instance).__name__
        signature = getattr(instance, "signature", None)
        if signature is not None:  # a predictor: named by what it produces, which survives save and load
            name += f"({', '.join(signature.output_fields)})"
        span = tracer.start_span(f"dspy {name}", attributes={"dspy.module": type(instance).__name__})
        self._open[call_id] = (span, context.attach(otel_trace.set_span_in_context(span)))

    def on_module_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        span, token = self._open.pop(call_id)
        if exception is not None:
            span.set_status(Status(StatusCode.ERROR, str(exception)[:500]))
            span.set_attribute("error.type", type(exception).__qualname__)
        context.detach(token)
        span.end()
