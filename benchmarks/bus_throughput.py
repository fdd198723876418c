"""Messages per second through the bus, with tracing off and on, against a bare anyio stream.

    .venv/bin/python -m benchmarks.bus_throughput [--messages 50000]

Each variant sends N small messages from one producer to one consuming actor and waits until all
are handled. Results go to benchmarks/results/bus_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from actors.base import Consumer
from benchmarks.common import provenance
from bus.bus import Bus
from bus.messages import POSTS_OBSERVED, PostObserved
from bus.records import DeadLetter, Metrics, Platform, PostEvent
from runtime.store import JsonlStore

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

    async def handle(self, message: PostObserved) -> None:
        return None


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


async def through_bus(n: int, provider: otel_trace.TracerProvider, dead: JsonlStore[DeadLetter]) -> float:
    bus = Bus(64, tracer_provider=provider)
    sink = Sink(bus, POSTS_OBSERVED, dead)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink.run)
        for _ in range(n):
            await bus.publish(POSTS_OBSERVED, MESSAGE)
        await bus.wait_idle()
        await bus.aclose()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 16))
    with tempfile.TemporaryDirectory() as tmp:
        dead = JsonlStore(Path(tmp) / "dead.jsonl", DeadLetter)
        dead.open()
        variants = {
            "bare anyio memory stream": lambda: bare_stream(n),
            "bus + actor, tracing off": lambda: through_bus(n, otel_trace.NoOpTracerProvider(), dead),
            "bus + actor, tracing on (SDK, batch export)": lambda: through_bus(n, sdk, dead),
        }
        results = {name: max(anyio.run(run) for _ in range(args.repeat)) for name, run in variants.items()}
    sdk.shutdown()
    report = {
        **provenance(),
        "messages": n,
        "messages_per_second": {k: round(v) for k, v in results.items()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
