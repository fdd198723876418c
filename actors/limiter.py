"""The Limiter: the one place model calls are made, with rate limits, retries and fallbacks."""

from __future__ import annotations

import logging
import math
import random
import time

import anyio
import msgspec
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from actors.base import Consumer, DeadLetters
from bus.bus import Bus
from bus.messages import PROVIDER_REQUESTS, CallFailed, ProviderReply, ProviderRequest, Topic
from runtime import metrics
from runtime.config import LimitSettings
from runtime.errors import CircuitOpen, MalformedAnswer, ProviderError, ProviderTimeout, ServerFailed
from runtime.providers import Provider
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.gate import Gate, SpacingFactory, local_spacing

log = logging.getLogger(__name__)
tracer = otel_trace.get_tracer("reer-runtime.limiter")


def backoff_delay(attempt: int, retry_after: float | None, max_retry_after: float) -> float:
    """Seconds to wait before retry `attempt` (0-based): `min(0.5 * 2**n, 8)` less up to 25% jitter,
    or the provider's `Retry-After` when it gave one (capped)."""
    if retry_after is not None:
        return min(retry_after, max_retry_after)
    jitter = 1 - 0.25 * random.random()
    return float(min(0.5 * 2**attempt, 8.0) * jitter)


def malformed(result: Generation | TokenScores) -> str | None:
    """What is wrong with an answer's shape, or None."""
    if isinstance(result, TokenScores):
        if not result.logprobs:
            return "no log-probabilities"
        if not all(math.isfinite(x) and x <= 1e-6 for x in result.logprobs):
            return "log-probabilities that are not finite and at most 0"
    elif result.finish_reason not in ("stop", "length"):
        return f"finish reason {result.finish_reason!r}"
    return None


class Limiter(Consumer[ProviderRequest]):
    """Makes each requested call on the first provider of the role's chain that succeeds.

    A call is retried on its provider while the error is retryable (with backoff and jitter, or the
    provider's Retry-After), then the next provider of the chain is tried. A provider whose circuit
    is open is skipped at once. An answer of the wrong shape counts as a retryable error. Each
    attempt is a CLIENT span named after the GenAI conventions.
    """

    name = "limiter"

    def __init__(
        self,
        bus: Bus,
        dead_letters: DeadLetters,
        chains: dict[Role, list[Provider]],
        limits: dict[str, LimitSettings],
        *,
        concurrency: int = 64,
        spacing: SpacingFactory = local_spacing,
    ) -> None:
        super().__init__(bus, PROVIDER_REQUESTS, dead_letters, concurrency=concurrency)
        gates: dict[str, Gate] = {}
        for chain in chains.values():
            for provider in chain:
                if provider.uri not in gates:
                    settings = limits.get(provider.uri) or limits.get("default") or LimitSettings()
                    gates[provider.uri] = Gate.for_provider(provider, settings, spacing)
        self._chains = {role: [gates[p.uri] for p in chain] for role, chain in chains.items()}
        self.gates = gates
        metrics.observe_circuits(lambda: {uri: gate.circuit.state for uri, gate in gates.items()})

    async def handle(self, message: ProviderRequest) -> None:
        reply_to = Topic[ProviderReply](message.reply_to, local=True)
        try:
            reply = ProviderReply(request_id=message.request_id, outcome=await self.call(message.role, message.call))
        except ProviderError as exc:
            reply = ProviderReply(request_id=message.request_id, outcome=CallFailed.of(exc))
        except Exception as exc:  # a bug here still answers, so the caller never waits forever
            failed = CallFailed(error=f"the limiter failed: {type(exc).__qualname__}: {exc}")
            await self.bus.publish(reply_to, ProviderReply(request_id=message.request_id, outcome=failed))
            raise  # and it is dead-lettered, and counted toward the crash loop
        await self.bus.publish(reply_to, reply)

    async def call(self, role: Role, call: GenerateCall | ScoreCall) -> Generation | TokenScores:
        """Make `call` along the role's chain; if all fail, raises the last provider's error, of its
        type, naming every provider's."""
        errors: list[str] = []
        last: ProviderError | None = None
        for index, gate in enumerate(self._chains[role]):
            if index > 0:
                metrics.provider_fallbacks.add(1, {"gen_ai.provider.name": gate.provider.system, "reer.role": role})
                log.warning("falling back to %s for a %s call after: %s", gate.provider.uri, role, errors[-1])
                otel_trace.get_current_span().add_event("fallback", {"reer.provider": gate.provider.uri})
            try:
                result = await self._attempts(gate, call)
                return msgspec.structs.replace(result, provider=gate.provider.uri)
            except ProviderError as exc:
                errors.append(f"{gate.provider.uri}: {exc} ({exc.kind})")
                last = exc
        message = "all providers failed: " + "; ".join(errors)
        if last is None:
            raise ProviderError(message)
        raise type(last)(message, retryable=last.retryable, retry_after=last.retry_after)

    async def _attempts(self, gate: Gate, call: GenerateCall | ScoreCall) -> Generation | TokenScores:
        attempt = 0
        while True:
            if not gate.circuit.allows():
                raise CircuitOpen(f"circuit open (retry in {gate.circuit.retry_in():.0f}s)")
            try:
                result = await self._once(gate, call)
            except ProviderError as exc:
                gate.circuit.failed()
                if not exc.retryable or attempt >= gate.limits.max_retries:
                    raise
                delay = backoff_delay(attempt, exc.retry_after, gate.limits.max_retry_after_s)
                log.warning("%s: %s (%s); retry %d in %.2fs", gate.provider.uri, exc, exc.kind, attempt + 1, delay)
                attempt += 1
                metrics.provider_retries.add(1, {"reer.provider": gate.provider.uri})
                await anyio.sleep(delay)
            else:
                gate.circuit.succeeded()
                return result

    async def _once(self, gate: Gate, call: GenerateCall | ScoreCall) -> Generation | TokenScores:
        provider = gate.provider
        # a score is a completions call with the prompt's log-probabilities: `text_completion` in
        # the GenAI conventions; `reer.operation` keeps the project's own name for it
        ours = "chat" if isinstance(call, GenerateCall) else "score"
        operation = "chat" if ours == "chat" else "text_completion"
        attrs: dict[str, str | int] = {
            "gen_ai.operation.name": operation,
            "reer.operation": ours,
            "gen_ai.provider.name": provider.system,
            "gen_ai.request.model": provider.model,
        }
        if provider.address is not None:
            attrs |= {"server.address": provider.address[0], "server.port": provider.address[1]}
        async with gate.slots:
            waited = time.perf_counter()
            await gate.admit()
            metrics.rate_limit_wait.record(time.perf_counter() - waited, {"reer.provider": provider.uri})
            started = time.perf_counter()
            with tracer.start_as_current_span(
                f"{operation} {provider.model}",
                kind=SpanKind.CLIENT,
                attributes=attrs,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                if isinstance(call, GenerateCall):
                    span.set_attribute("gen_ai.request.temperature", call.temperature)
                    span.set_attribute("gen_ai.request.top_p", call.top_p)
                    span.set_attribute("gen_ai.request.frequency_penalty", call.frequency_penalty)
                    span.set_attribute("gen_ai.request.max_tokens", call.max_tokens)
                try:
                    with anyio.fail_after(gate.limits.timeout_s):
                        result = (
                            await provider.generate(call)
                            if isinstance(call, GenerateCall)
                            else await provider.score(call)
                        )
                except TimeoutError as exc:
                    error: ProviderError = ProviderTimeout(f"timed out after {gate.limits.timeout_s}s")
                    self._failed(span, error, attrs, started, provider.uri)
                    raise error from exc
                except ProviderError as exc:
                    self._failed(span, exc, attrs, started, provider.uri)
                    raise
                except Exception as exc:  # a provider's own bug still ends as a clean failure
                    error = ServerFailed(f"{type(exc).__qualname__}: {exc}", retryable=False)
                    self._failed(span, error, attrs, started, provider.uri)
                    raise error from exc
                span.set_attribute("reer.circuit.state", gate.circuit.state)
                span.set_attribute("gen_ai.response.model", provider.model)
                if problem := malformed(result):
                    error = MalformedAnswer(f"malformed answer: {problem}")
                    self._failed(span, error, attrs, started, provider.uri)
                    raise error
                metrics.operation_duration.record(time.perf_counter() - started, attrs)
                metrics.provider_calls.add(1, {"reer.provider": provider.uri, "reer.outcome": "ok"})
                counts = {"input": result.input_tokens}
                if isinstance(result, Generation):
                    counts["output"] = result.output_tokens
                    span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
                for kind, tokens in counts.items():  # a count the provider did not report is left out
                    if tokens is not None:
                        metrics.token_usage.record(tokens, {**attrs, "gen_ai.token.type": kind})
                        span.set_attribute(f"gen_ai.usage.{kind}_tokens", tokens)
                return result

    @staticmethod
    def _failed(
        span: otel_trace.Span,
        error: ProviderError,
        attrs: dict[str, str | int],
        started: float,
        uri: str,
    ) -> None:
        span.set_status(Status(StatusCode.ERROR, str(error)))
        span.set_attribute("error.type", error.kind)
        span.set_attribute("reer.retryable", error.retryable)
        metrics.operation_duration.record(time.perf_counter() - started, {**attrs, "error.type": error.kind})
        outcome = "timeout" if isinstance(error, ProviderTimeout) else "error"
        metrics.provider_calls.add(1, {"reer.provider": uri, "reer.outcome": outcome})
