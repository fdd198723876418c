"""Messages per second through the bus, with tracing off and on, against a bare anyio stream; and
the same bus on NATS JetStream (a real `nats-server -js` on loopback), with publish-to-handle latency.

    .venv/bin/python -m benchmarks.bus_throughput [--messages 50000] [--nats-messages 5000]

Each throughput variant sends N small messages from one producer to one consuming actor and waits
until all are handled. Latency is one message at a time: publish, then wait until the actor has
handled it. Results go to benchmarks/results/bus_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from actors.base import Consumer
from benchmarks.common import provenance
from bus.bus import Bus
from bus.jetstream import JetStreamOptions, JetStreamTransport
from bus.messages import POSTS_OBSERVED, PostObserved
from runtime.records import DeadLetter, Metrics, Platform, PostEvent
from runtime.store import JsonlStore
from tests.nats_server import binary, nats_server

RESULTS = Path(__file__).parent / "results" / "bus_throughput.json"

MESSAGE = PostObserved(
    post=PostEvent(
        id="1",
        text="a post",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        platform=Platform.X,
        author="a",
        metrics=Metrics(likes=1, reposts=0, replies=0),
    ),
    engagement=0.5,
    selected=True,
)


class Discard(SpanExporter):
    """Takes finished spans through the batch processor and drops them (no network)."""

    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Sink(Consumer[PostObserved]):
    name = "sink"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled = anyio.Event()

    async def handle(self, message: PostObserved) -> None:
        self.handled.set()


async def bare_stream(n: int) -> float:
    send, receive = anyio.create_memory_object_stream[PostObserved](64)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            async with receive:
                async for _ in receive:
                    pass

        tg.start_soon(consume)
        async with send:
            for _ in range(n):
                await send.send(MESSAGE)
    return n / (time.perf_counter() - started)


async def through_bus(
    n: int, provider: otel_trace.TracerProvider, dead: JsonlStore[DeadLetter], nats_url: str | None = None
) -> float:
    async with open_bus(provider, nats_url) as bus:
        sink = Sink(bus, POSTS_OBSERVED, dead)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.run)
            for _ in range(n):
                await bus.publish(POSTS_OBSERVED, MESSAGE)
            await bus.wait_idle()
            elapsed = time.perf_counter() - started  # the idle check's last poll is not the bus's cost
            await bus.aclose()
    return n / elapsed


async def latency(n: int, dead: JsonlStore[DeadLetter], nats_url: str | None = None) -> dict[str, float]:
    """Publish-to-handle milliseconds, one message at a time: p50 and p99."""
    samples = []
    async with open_bus(otel_trace.NoOpTracerProvider(), nats_url) as bus:
        sink = Sink(bus, POSTS_OBSERVED, dead)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.run)
            for _ in range(n):
                sink.handled = anyio.Event()
                started = time.perf_counter()
                await bus.publish(POSTS_OBSERVED, MESSAGE)
                await sink.handled.wait()
                samples.append((time.perf_counter() - started) * 1000)
            await bus.aclose()
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


@asynccontextmanager
async def open_bus(provider: otel_trace.TracerProvider, nats_url: str | None) -> AsyncIterator[Bus]:
    """A bus in memory, or on the NATS server at `nats_url` (a namespace of its own each time)."""
    if nats_url is None:
        yield Bus(64, tracer_provider=provider)
        return
    options = JetStreamOptions(poll_s=0.05)
    transport = await JetStreamTransport.connect(nats_url, f"bench_{uuid.uuid4().hex[:8]}", options)
    try:
        yield Bus(64, tracer_provider=provider, shared=transport)
    finally:
        await transport.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--nats-messages", type=int, default=5_000)
    parser.add_argument("--latency-samples", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, m = args.messages, args.nats_messages
    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 16))
    off = otel_trace.NoOpTracerProvider()
    with tempfile.TemporaryDirectory() as tmp, nats_server(Path(tmp) / "nats") as url:
        dead = JsonlStore(Path(tmp) / "dead.jsonl", DeadLetter)
        dead.open()
        variants: dict[str, Callable[[], Awaitable[float]]] = {
            "bare anyio memory stream": lambda: bare_stream(n),
            "bus + actor, tracing off": lambda: through_bus(n, off, dead),
            "bus + actor, tracing on (SDK, batch export)": lambda: through_bus(n, sdk, dead),
            "bus on NATS JetStream + actor, tracing off": lambda: through_bus(m, off, dead, url),
            "bus on NATS JetStream + actor, tracing on": lambda: through_bus(m, sdk, dead, url),
        }
        results = {name: max(anyio.run(run) for _ in range(args.repeat)) for name, run in variants.items()}
        latencies = {
            "memory": anyio.run(latency, args.latency_samples, dead),
            "nats": anyio.run(latency, args.latency_samples, dead, url),
        }
        server = subprocess.run([binary(), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    sdk.shutdown()
    report = {
        **provenance(),
        "messages": n,
        "nats_messages": m,
        "nats_server": server,
        "messages_per_second": {k: round(v) for k, v in results.items()},
        "publish_to_handle": latencies,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
