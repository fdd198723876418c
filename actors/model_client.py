"""How an actor asks the Limiter for a model call and waits for the answer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
from opentelemetry import trace as otel_trace

from actors.base import Consumer, DeadLetters
from bus.bus import Bus
from bus.messages import PROVIDER_REQUESTS, CallFailed, ProviderReply, ProviderRequest, reply_topic
from runtime.errors import CallCapReached
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores


class ModelClient(Consumer[ProviderReply]):
    """Sends `ProviderRequest`s for one requester and matches the replies to the callers.

    `run` must be running (in the actor's task group) for calls to complete.
    """

    def __init__(self, bus: Bus, requester: str, dead_letters: DeadLetters) -> None:
        self.name = requester
        self._reply_to = reply_topic(requester)
        super().__init__(bus, self._reply_to, dead_letters)
        self._waiting: dict[str, tuple[anyio.Event, list[ProviderReply]]] = {}

    async def handle(self, message: ProviderReply) -> None:
        waiter = self._waiting.pop(message.request_id, None)
        if waiter is not None:
            waiter[1].append(message)
            waiter[0].set()

    async def generate(self, call: GenerateCall) -> Generation:
        result = await self._call("generator", call)
        assert isinstance(result, Generation)
        return result

    async def score(self, call: ScoreCall) -> TokenScores:
        result = await self._call("scorer", call)
        assert isinstance(result, TokenScores)
        return result

    async def judge(self, call: ScoreCall) -> TokenScores:
        result = await self._call("judge", call)
        assert isinstance(result, TokenScores)
        return result

    async def _call(self, role: Role, call: GenerateCall | ScoreCall) -> Generation | TokenScores:
        request_id = uuid.uuid4().hex
        done = anyio.Event()
        box: list[ProviderReply] = []
        self._waiting[request_id] = (done, box)
        try:
            await self.bus.publish(
                PROVIDER_REQUESTS,
                ProviderRequest(request_id=request_id, role=role, call=call, reply_to=self._reply_to.name),
            )
            await done.wait()
        finally:
            self._waiting.pop(request_id, None)
        outcome = box[0].outcome
        if isinstance(outcome, CallFailed):
            otel_trace.get_current_span().add_event(
                "provider failed", {"error": outcome.error, "error.type": outcome.kind}
            )
            raise outcome.exception()
        return outcome


async def run_beside(model: ModelClient, loop: Callable[[], Awaitable[None]]) -> None:
    """Run an actor's consumer `loop` with its `model` client beside it; the client stops once the
    loop has ended (the bus closed and the messages in hand are done)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(model.run)
        await loop()
        tg.cancel_scope.cancel()


class ThreadModels:
    """A `ModelClient` for code running in a worker thread (DSPy): blocking calls, counted, and
    refused with `CallCapReached` past `cap` (once refused, `capped` is set)."""

    def __init__(self, client: ModelClient, cap: int | None = None) -> None:
        self._client = client
        self._cap = cap
        self.calls = 0
        self.capped = False

    def generate(self, call: GenerateCall) -> Generation:
        self._count()
        return anyio.from_thread.run(self._client.generate, call)

    def score(self, call: ScoreCall) -> TokenScores:
        self._count()
        return anyio.from_thread.run(self._client.score, call)

    @contextmanager
    def within_cap(self, work: str) -> Iterator[None]:
        """Run `work` (its name), which is refused as a whole if a call of it was refused, whatever the
        code that made the call did with the refusal (DSPy's optimizers carry on past errors)."""
        try:
            yield
        except Exception as exc:
            if self.capped:
                raise self._refusal(work) from exc
            raise
        if self.capped:
            raise self._refusal(work)

    def _refusal(self, work: str) -> CallCapReached:
        return CallCapReached(f"{work} needs more than the {self._cap} model calls of writer.max_calls_per_request")

    def _count(self) -> None:
        if self._cap is not None and self.calls >= self._cap:
            self.capped = True
            raise self._refusal("the request")
        self.calls += 1
