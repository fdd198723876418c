"""The Limiter: retries what is retryable, falls back along the chain, spans every attempt."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from actors.limiter import Limiter, backoff_delay, malformed
from actors.model_client import ModelClient
from bus.bus import Bus
from bus.memory import MemoryTransport
from reer_runtime.testing import MockProvider
from runtime.config import LimitSettings, Settings
from runtime.errors import (
    CircuitOpen,
    MalformedAnswer,
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    ProviderTimeout,
    RateLimited,
    ServerFailed,
)
from runtime.providers import Provider, open_provider
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.dummy import DummyProvider
from runtime.providers.gate import Gate
from runtime.records import DeadLetter
from runtime.store import JsonlStore

pytestmark = pytest.mark.anyio

CALL = GenerateCall(
    messages=[ChatMessage("user", "hello")], max_tokens=5, temperature=0.6, top_p=0.9, frequency_penalty=0.2, seed=1
)


def flaky(uri: str, failures: int, error: ProviderError | None = None, *, hang: bool = False) -> MockProvider:
    """A provider whose first `failures` calls fail with `error` (or hang), then answer as `dummy://`."""
    dummy = DummyProvider(uri)

    async def generate(call: GenerateCall) -> Generation:
        if len(provider.calls) <= failures:
            if hang:
                await anyio.sleep_forever()
            raise error or ServerFailed("503 service unavailable", retry_after=0)
        return await dummy.generate(call)

    provider = MockProvider(generate, uri=uri, model="ngram-5")
    return provider


async def call_through(
    tmp_path: Path, chain: list[Provider], limits: LimitSettings, bus: Bus | None = None
) -> Generation | ProviderError:
    """Send one generate call through a real bus (in memory by default) and Limiter; the result or
    the error raised."""
    dead = JsonlStore(tmp_path / "dead.jsonl", DeadLetter)
    dead.open()
    bus = bus or Bus()
    limiter = Limiter(bus, dead, {"generator": chain, "scorer": chain}, {"default": limits})
    client = ModelClient(bus, "test", dead)
    outcome: Generation | ProviderError
    # a call left unanswered fails the test rather than hang it
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.run)
            tg.start_soon(client.run)
            try:
                outcome = await client.generate(CALL)
            except ProviderError as exc:
                outcome = exc
            await bus.wait_idle()
            await bus.aclose()
    return outcome


async def test_a_calls_reply_stays_in_the_process_when_the_bus_is_shared(tmp_path: Path) -> None:
    shared = MemoryTransport()  # stands for NATS: the Limiter's replies must not go there
    result = await call_through(tmp_path, [flaky("flaky://a", failures=0)], LimitSettings(), Bus(shared=shared))
    assert isinstance(result, Generation) and result.provider == "flaky://a"


def direct_limiter(
    generator: list[Provider], scorer: tuple[Provider, ...] = (), limits: dict[str, LimitSettings] | None = None
) -> Limiter:
    """A Limiter called directly (`call`), not through the bus: it writes no dead letter."""
    return Limiter(
        Bus(),
        JsonlStore(Path("unused.jsonl"), DeadLetter),
        {"generator": generator, "scorer": list(scorer)},
        limits or {},
    )


async def test_retryable_errors_are_retried_on_the_same_provider(tmp_path: Path) -> None:
    failing = flaky("flaky://a", failures=2)
    result = await call_through(tmp_path, [failing], LimitSettings(max_retries=3))
    assert isinstance(result, Generation) and result.provider == "flaky://a"
    assert len(failing.calls) == 3


async def test_after_the_retries_the_next_provider_of_the_chain_answers(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    first, second = flaky("flaky://a", failures=99), flaky("flaky://b", failures=0)
    result = await call_through(tmp_path, [first, second], LimitSettings(max_retries=2))
    assert isinstance(result, Generation) and result.provider == "flaky://b"
    assert len(first.calls) == 3 and len(second.calls) == 1
    client_spans = [s for s in spans.get_finished_spans() if s.name == "chat ngram-5"]
    assert [s.status.is_ok for s in client_spans] == [False, False, False, True]
    attributes = dict(client_spans[0].attributes or {})
    assert attributes["gen_ai.provider.name"] == "mock" and attributes["gen_ai.request.max_tokens"] == 5
    sampling = ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.frequency_penalty")
    assert [attributes[k] for k in sampling] == [0.6, 0.9, 0.2]
    limiter_span = next(s for s in spans.get_finished_spans() if s.name == "process provider.requests")
    assert [(e.name, dict(e.attributes or {})) for e in limiter_span.events] == [
        ("fallback", {"reer.provider": "flaky://b"})
    ]


async def test_errors_that_are_not_retryable_go_straight_to_the_fallback(tmp_path: Path) -> None:
    bad = flaky("flaky://a", failures=99, error=ProviderError("401 bad key", retryable=False))
    result = await call_through(tmp_path, [bad], LimitSettings(max_retries=5))
    assert str(result) == "all providers failed: flaky://a: 401 bad key (error)"
    assert len(bad.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        ProviderTimeout("no answer"),
        RateLimited("429 slow down", retry_after=0),
        ServerFailed("502 bad gateway"),
        MalformedAnswer("not JSON"),
        ProviderRefused("400 context too long"),
    ],
    ids=lambda e: e.kind,
)
async def test_a_failure_keeps_its_kind_for_the_caller_the_span_and_the_log(
    error: ProviderError, tmp_path: Path, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    failing = flaky("flaky://a", failures=99, error=error)
    result = await call_through(tmp_path, [failing], LimitSettings(max_retries=1))
    assert type(result) is type(error) and isinstance(result, ProviderError)  # the caller catches its kind
    assert result.retryable == error.retryable and f"flaky://a: {error} ({error.kind})" in str(result)
    assert len(failing.calls) == (2 if error.retryable else 1)  # retried only if its kind is
    attempts = [s for s in spans.get_finished_spans() if s.name == "chat ngram-5"]
    assert attempts and all(dict(s.attributes or {})["error.type"] == error.kind for s in attempts)
    if error.retryable:
        assert f"flaky://a: {error} ({error.kind}); retry 1 in" in caplog.text


async def test_a_hung_call_times_out_and_is_retried(tmp_path: Path) -> None:
    hung = flaky("flaky://a", failures=1, hang=True)
    result = await call_through(tmp_path, [hung], LimitSettings(timeout_s=0.05, max_retries=1))
    assert isinstance(result, Generation) and len(hung.calls) == 2
    hung = flaky("flaky://a", failures=9, hang=True)
    result = await call_through(tmp_path, [hung], LimitSettings(timeout_s=0.05, max_retries=0))
    assert str(result) == "all providers failed: flaky://a: timed out after 0.05s (timeout)"


async def test_the_limiter_names_the_answer_and_the_wrong_shape(tmp_path: Path) -> None:
    def unstamped(call: GenerateCall) -> Generation:
        return Generation(text="hi", input_tokens=1, output_tokens=1, finish_reason="stop", provider="")

    result = await call_through(tmp_path, [MockProvider(unstamped, uri="mock://a")], LimitSettings())
    assert isinstance(result, Generation) and result.provider == "mock://a"  # the Limiter says who answered

    def cut(call: GenerateCall) -> Generation:
        return Generation(text="hi", input_tokens=1, output_tokens=1, finish_reason="")

    result = await call_through(tmp_path, [MockProvider(cut, uri="mock://b")], LimitSettings(max_retries=0))
    assert str(result) == "all providers failed: mock://b: malformed answer: finish reason '' (malformed)"


async def test_a_role_with_no_provider_fails_its_calls() -> None:
    limiter = direct_limiter([])
    with pytest.raises(ProviderError) as caught:
        await limiter.call("scorer", CALL)
    assert type(caught.value) is ProviderError and str(caught.value) == "all providers failed: "


async def test_a_providers_own_bug_is_a_failure_not_retried_that_names_it(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async def generate(call: GenerateCall) -> Generation:
        raise KeyError("choices")  # a provider's parsing bug, not a ProviderError

    buggy = MockProvider(generate, uri="buggy://a", model="ngram-5")
    result = await call_through(tmp_path, [buggy, flaky("flaky://b", failures=0)], LimitSettings(max_retries=3))
    assert isinstance(result, Generation) and result.provider == "flaky://b"  # the chain goes on
    assert len(buggy.calls) == 1  # a bug does not go away on a retry
    (attempt, _) = [s for s in spans.get_finished_spans() if s.name == "chat ngram-5"]
    assert not attempt.status.is_ok and attempt.status.description == "KeyError: 'choices'"
    assert dict(attempt.attributes or {})["error.type"] == "server_failed"


async def test_when_every_provider_fails_the_last_ones_kind_and_retry_hint_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hinted: list[float | None] = []
    real_backoff = backoff_delay

    def recording_backoff(attempt: int, retry_after: float | None, ceiling: float) -> float:
        hinted.append(retry_after)
        return real_backoff(attempt, retry_after, ceiling)

    monkeypatch.setattr("actors.limiter.backoff_delay", recording_backoff)
    down = flaky("flaky://a", failures=99, error=ServerFailed("500", retryable=False))
    slow = flaky("flaky://b", failures=99, error=RateLimited("429 slow down", retry_after=0.01))
    limiter = direct_limiter([down, slow], limits={"default": LimitSettings(max_retries=1)})
    with pytest.raises(RateLimited) as caught:
        await limiter.call("generator", CALL)
    assert str(caught.value) == (
        "all providers failed: flaky://a: 500 (server_failed); flaky://b: 429 slow down (rate_limited)"
    )
    assert (caught.value.retryable, caught.value.retry_after) == (True, 0.01)  # the caller may come back then
    assert hinted == [0.01]  # the provider's own Retry-After set the one retry's wait
    reverse = direct_limiter([slow, down], limits={"default": LimitSettings(max_retries=0)})
    with pytest.raises(ServerFailed) as failed:
        await reverse.call("generator", CALL)
    assert (failed.value.retryable, failed.value.retry_after) == (False, None)  # not worth coming back for


def test_a_provider_takes_its_own_limits_else_the_defaults() -> None:
    own, default = LimitSettings(max_retries=0, per_minute=600), LimitSettings(max_retries=3)
    chain: list[Provider] = [DummyProvider("dummy://a"), DummyProvider("dummy://b")]
    limiter = direct_limiter(chain, limits={"dummy://a": own, "default": default})
    assert (limiter.gates["dummy://a"].limits, limiter.gates["dummy://b"].limits) == (own, default)


async def test_a_score_is_a_text_completion_span_naming_the_server(spans: InMemorySpanExporter) -> None:
    scorer = MockProvider(
        score=lambda call: [-1.0, -2.0], uri="openai://gpu.local:8000/m", model="m", address=("gpu.local", 8000)
    )
    limiter = direct_limiter([], (scorer,))
    result = await limiter.call("scorer", ScoreCall(messages=[ChatMessage("user", "x")], prefix="", target="ab"))
    assert isinstance(result, TokenScores) and result.provider == "openai://gpu.local:8000/m"
    (span,) = [s for s in spans.get_finished_spans() if s.name.endswith(" m")]
    attributes = dict(span.attributes or {})
    assert span.name == "text_completion m" and attributes["reer.operation"] == "score"
    assert (attributes["server.address"], attributes["server.port"]) == ("gpu.local", 8000)
    assert span.kind == SpanKind.CLIENT


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (TokenScores(logprobs=[0.0, -2.5, -1e-9], input_tokens=3), None),
        (TokenScores(logprobs=[-1.0, 1e-7], input_tokens=2), None),  # a rounding error above 0 is not a fault
        (TokenScores(logprobs=[-1.0, 1e-6], input_tokens=2), None),
        (TokenScores(logprobs=[-1.0, 2e-6], input_tokens=2), "log-probabilities that are not finite and at most 0"),
        (TokenScores(logprobs=[-1.0, 0.5], input_tokens=2), "log-probabilities that are not finite and at most 0"),
        (TokenScores(logprobs=[float("nan")], input_tokens=1), "log-probabilities that are not finite and at most 0"),
        (TokenScores(logprobs=[float("-inf")], input_tokens=1), "log-probabilities that are not finite and at most 0"),
        (TokenScores(logprobs=[], input_tokens=1), "no log-probabilities"),
        (Generation(text="hi", input_tokens=1, output_tokens=1, finish_reason="stop"), None),
        (Generation(text="hi", input_tokens=1, output_tokens=1, finish_reason="length"), None),
        (
            Generation(text="", input_tokens=1, output_tokens=0, finish_reason="content_filter"),
            "finish reason 'content_filter'",
        ),
        (Generation(text="hi", input_tokens=1, output_tokens=1, finish_reason=""), "finish reason ''"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_named(answer: Generation | TokenScores, problem: str | None) -> None:
    assert malformed(answer) == problem


async def test_a_failure_inside_the_limiter_still_answers_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> Generation:
        raise RuntimeError("no address today")

    monkeypatch.setattr(Limiter, "_once", broken)  # a bug in the Limiter's own work, not a provider's
    result = await call_through(tmp_path, [flaky("flaky://a", failures=0)], LimitSettings())
    assert str(result) == "the limiter failed: RuntimeError: no address today"  # an answer, not a hang


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 8.0)]:
        delays = [backoff_delay(attempt, None, 60) for _ in range(50)]
        assert all(0.75 * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert backoff_delay(0, 12.0, 60) == 12.0
    assert backoff_delay(0, 600.0, 60) == 60.0


async def test_a_rate_limit_spaces_calls_so_no_window_exceeds_it() -> None:
    gate = Gate.for_provider(DummyProvider(), LimitSettings(per_minute=1200))  # one call per 50 ms at most
    times = []
    for _ in range(12):
        await gate.admit()
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.049  # a burst would have let the first calls through together


def fault(uri: str, tmp_path: Path) -> Provider:
    return open_provider(uri, tmp_path)


async def test_malformed_answers_are_retried_then_fall_back(tmp_path: Path) -> None:
    broken = fault("fault://?base=dummy://&malformed=1&seed=1", tmp_path)
    result = await call_through(tmp_path, [broken, DummyProvider("dummy://b")], LimitSettings(max_retries=1))
    assert isinstance(result, Generation) and result.provider == "dummy://b"
    assert broken.injected["malformed"] == 2  # type: ignore[attr-defined]


async def test_an_open_circuit_skips_its_provider_until_it_resets(tmp_path: Path) -> None:
    down = flaky("flaky://down", failures=3, error=ServerFailed("503", retry_after=0))
    limits = LimitSettings(max_retries=0, circuit_failures=2, circuit_reset_s=60)
    dead = JsonlStore(tmp_path / "dead.jsonl", DeadLetter)
    dead.open()
    bus = Bus()
    chains: dict[Role, list[Provider]] = {"generator": [down, DummyProvider("dummy://b")], "scorer": [down]}
    limiter = Limiter(bus, dead, chains, {"default": limits})
    circuit = limiter.gates["flaky://down"].circuit
    answers = [(await limiter.call("generator", CALL)).provider for _ in range(4)]
    assert answers == ["dummy://b"] * 4
    assert len(down.calls) == 2 and circuit.state == "open"  # two failures opened it; later calls skipped it
    with pytest.raises(CircuitOpen, match=r"flaky://down: circuit open \(retry in 60s\) \(circuit_open\)"):
        await limiter.call("scorer", CALL)  # a chain of the open provider alone
    assert not circuit.allows() and 59 < circuit.retry_in() <= 60  # a minute is far from over
    circuit.opened_at -= 60  # the reset period passes (the circuit reads time.monotonic)
    assert (circuit.allows(), circuit.state) == (True, "half_open")
    await limiter.call("generator", CALL)
    assert len(down.calls) == 3 and circuit.state == "open"  # the trial failed: open again
    circuit.opened_at -= 60  # and the next trial is the first call it answers
    result = await limiter.call("generator", CALL)
    assert (result.provider, circuit.state) == ("flaky://down", "closed")


def test_fault_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="unknown option"):
        open_provider("fault://?base=dummy://&explode=1", tmp_path)
    with pytest.raises(ProviderConfigError, match="sum to at most 1"):
        open_provider("fault://?error=0.7&hang=0.7", tmp_path)


def batching(capacity: int | None, expected: int) -> tuple[MockProvider, list[int]]:
    """A provider that holds every call until `expected` are in flight together, as a batching
    engine would like; and the most calls it has seen in flight (a list of one, kept up to date)."""
    dummy, full = DummyProvider(), anyio.Event()
    in_flight, most = [0], [0]

    async def generate(call: GenerateCall) -> Generation:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        if in_flight[0] == expected:
            full.set()
        await full.wait()
        in_flight[0] -= 1
        return await dummy.generate(call)

    return MockProvider(generate, uri="batching://", capacity=capacity), most


@pytest.mark.parametrize(
    ("capacity", "limits", "expected"),
    [(6, LimitSettings(), 6), (None, LimitSettings(), 4), (6, LimitSettings(concurrency=2), 2)],
    ids=["the provider's batch", "4 when it does not say", "the configured cap"],
)
async def test_calls_in_flight_default_to_what_the_provider_batches(
    tmp_path: Path, capacity: int | None, limits: LimitSettings, expected: int
) -> None:
    provider, most = batching(capacity, expected)
    dead = JsonlStore(tmp_path / "dead.jsonl", DeadLetter)
    dead.open()
    bus = Bus()
    limiter = Limiter(bus, dead, {"generator": [provider], "scorer": [provider]}, {"default": limits})
    client = ModelClient(bus, "test", dead)
    with anyio.fail_after(60):  # fewer calls let through than expected would wait forever
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.run)
            tg.start_soon(client.run)
            async with anyio.create_task_group() as calls:
                for _ in range(10):
                    calls.start_soon(client.generate, CALL)
            await bus.wait_idle()
            await bus.aclose()
    assert most == [expected] and len(provider.calls) == 10


def test_posts_mined_at_once_fill_the_generators_batch() -> None:
    settings = Settings(data_dir=Path("/nonexistent"))
    assert settings.mining_concurrency(16) == 8  # two rewrites of a section in flight per post
    assert settings.model_copy(update={"miner_concurrency": 3}).mining_concurrency(16) == 3
    assert settings.mining_concurrency(None) == 2
