"""Test doubles for code built on reer-runtime, and for its own tests.

- `MockProvider`: a model whose answers are your functions (as httpx's `MockTransport` is a
  server); what you leave out is answered by the real `dummy://` model, never by canned success.
- `capture_spans()`: the OpenTelemetry spans finished inside a block.
- `TopicRecorder`: the messages a bus topic carried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bus.bus import Bus
from bus.messages import Topic
from runtime.providers.base import Description
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.dummy import DummyProvider
from runtime.telemetry import process_telemetry

M = TypeVar("M")
Handler = Callable[[GenerateCall], "Generation | str | Awaitable[Generation | str]"]
Scorer = Callable[[ScoreCall], "TokenScores | list[float] | Awaitable[TokenScores | list[float]]"]

__all__ = ["MockProvider", "TopicRecorder", "capture_spans"]


class MockProvider:
    """A provider that answers with `generate` and `score`, functions of the call (sync or async).

    `generate` may return a `Generation` or just its text; `score` a `TokenScores` or just the
    log-probabilities (then no token counts are reported). Either may raise a `ProviderError`
    subclass to fail the call as a provider would. Left out, the real `dummy://` model answers.
    Every call is kept in `calls`.
    """

    system = "mock"

    def __init__(
        self,
        generate: Handler | None = None,
        score: Scorer | None = None,
        *,
        uri: str = "mock://",
        model: str = "mock",
        capacity: int | None = None,
        address: tuple[str, int] | None = None,
    ) -> None:
        self.uri, self.model, self.capacity, self.address = uri, model, capacity, address
        self.calls: list[GenerateCall | ScoreCall] = []
        self._generate, self._score = generate, score
        self._dummy = DummyProvider(uri)

    async def check(self, role: Role) -> str:
        return "a mock provider"

    def describe(self) -> Description:
        return Description()

    async def generate(self, call: GenerateCall) -> Generation:
        self.calls.append(call)
        if self._generate is None:
            return await self._dummy.generate(call)
        written = self._generate(call)
        answer = await written if isinstance(written, Awaitable) else written
        if isinstance(answer, Generation):
            return answer
        return Generation(text=answer, input_tokens=None, output_tokens=None, finish_reason="stop", provider=self.uri)

    async def score(self, call: ScoreCall) -> TokenScores:
        self.calls.append(call)
        if self._score is None:
            return await self._dummy.score(call)
        scored = self._score(call)
        answer = await scored if isinstance(scored, Awaitable) else scored
        if isinstance(answer, TokenScores):
            return answer
        return TokenScores(logprobs=list(answer), input_tokens=0, provider=self.uri)  # 0: not counted

    async def aclose(self) -> None:
        return None


class _Tap(SpanProcessor):
    """A span processor on the process's tracer provider that hands finished spans to the
    exporters of the `capture_spans` blocks open now, and to nothing otherwise."""

    def __init__(self) -> None:
        self.exporters: list[InMemorySpanExporter] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        for exporter in list(self.exporters):
            exporter.export([span])


_taps: list[_Tap] = []


@contextmanager
def capture_spans() -> Iterator[InMemorySpanExporter]:
    """The spans that finish inside the block, in `exporter.get_finished_spans()`.

    The spans are those of the process's tracer provider (the one the `Runtime` installs; installed
    here on first use). Nothing is replaced: on leaving the block, the spans go nowhere new."""
    if not _taps:
        _taps.append(_Tap())
        process_telemetry().tracer_provider.add_span_processor(_taps[0])
    exporter = InMemorySpanExporter()
    _taps[0].exporters.append(exporter)
    try:
        yield exporter
    finally:
        _taps[0].exporters.remove(exporter)


class TopicRecorder(Generic[M]):
    """Subscribes to `topic` on `bus` now (as its own consumer group); `bodies()`, once the bus is
    closed, gives every message the topic carried since, in order, each acknowledged."""

    def __init__(self, bus: Bus, topic: Topic[M], group: str = "testing") -> None:
        self._subscription = bus.subscribe(topic, group)

    async def bodies(self) -> list[M]:
        """The bodies of the messages, after the bus is closed (before, this waits for it)."""
        found: list[M] = []
        while (delivery := await self._subscription.next()) is not None:
            found.append(delivery.envelope.body)
            await delivery.ack()
        return found
