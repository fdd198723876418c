"""Trace context on the bus: a PRODUCER span per send, a CONSUMER span per handled message.

The W3C `traceparent` travels in the envelope's headers. A process span takes the creation context
as its parent (each message is handled alone), so everything one post causes is one trace.
Attribute names follow the OpenTelemetry messaging conventions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Span, SpanKind, TracerProvider

from bus.messages import Envelope

if TYPE_CHECKING:
    from typing import Any


def tracer(provider: TracerProvider | None = None) -> otel_trace.Tracer:
    """The bus's tracer, from `provider` or the global one."""
    return otel_trace.get_tracer("reer-runtime.bus", tracer_provider=provider)


@contextmanager
def send_span(tracer: otel_trace.Tracer, topic: str, message_id: str, system: str) -> Iterator[dict[str, str]]:
    """Open the PRODUCER span of one send; yields the headers that carry its context."""
    with tracer.start_as_current_span(
        f"send {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": message_id,
        },
    ):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


@contextmanager
def process_span(
    tracer: otel_trace.Tracer, envelope: Envelope[Any], actor: str, system: str, attempt: int = 1
) -> Iterator[Span]:
    """Open the CONSUMER span in which `actor` handles `envelope` (delivered for the `attempt`th
    time), parented on its sender: a redelivered message joins the same trace."""
    parent = propagate.extract(envelope.headers)
    with tracer.start_as_current_span(
        f"process {envelope.topic}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": envelope.topic,
            "messaging.message.id": envelope.id,
            "messaging.consumer.group.name": actor,
            "reer.delivery.attempt": attempt,
        },
    ) as span:
        yield span
