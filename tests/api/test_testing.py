"""`reer_runtime.testing`: the doubles users and the project's tests share."""

from __future__ import annotations

import pytest
from opentelemetry import trace as otel_trace

from bus.bus import Bus
from bus.messages import POSTS_OBSERVED, PostObserved
from reer_runtime.testing import MockProvider, TopicRecorder, capture_spans
from runtime.errors import RateLimited
from runtime.providers.calls import ChatMessage, GenerateCall, ScoreCall
from runtime.providers.dummy import DummyProvider
from tests.helpers import make_post

pytestmark = pytest.mark.anyio
CALL = GenerateCall(messages=[ChatMessage("user", "Write about backups.")], max_tokens=12, seed=3)
SCORE = ScoreCall(messages=[ChatMessage("user", "Write about backups.")], prefix="", target="Restore them.")


async def test_a_mock_provider_answers_with_your_functions_and_dummy_for_the_rest() -> None:
    async def score(call: ScoreCall) -> list[float]:
        return [-0.5] * len(call.target)

    mock = MockProvider(generate=lambda call: f"{len(call.messages)} message", score=score)
    answer = await mock.generate(CALL)
    assert (answer.text, answer.finish_reason, answer.provider) == ("1 message", "stop", "mock://")
    assert (await mock.score(SCORE)).logprobs == [-0.5] * 13
    assert mock.calls == [CALL, SCORE]

    honest, dummy = MockProvider(), DummyProvider("mock://")
    assert (await honest.generate(CALL)).text == (await dummy.generate(CALL)).text  # the real model's answer
    assert (await honest.score(SCORE)).logprobs == (await dummy.score(SCORE)).logprobs

    def limited(call: GenerateCall) -> str:
        raise RateLimited("429", retry_after=2)

    with pytest.raises(RateLimited) as raised:
        await MockProvider(generate=limited).generate(CALL)
    assert raised.value.retry_after == 2 and raised.value.retryable


def test_capture_spans_keeps_the_spans_of_its_block_only() -> None:
    tracer = otel_trace.get_tracer("test")
    with capture_spans() as outer:
        with tracer.start_as_current_span("first"):
            pass
        with capture_spans() as inner, tracer.start_as_current_span("second"):
            pass
    with tracer.start_as_current_span("after"):
        pass
    assert [s.name for s in outer.get_finished_spans()] == ["first", "second"]
    assert [s.name for s in inner.get_finished_spans()] == ["second"]


async def test_a_topic_recorder_gives_what_the_topic_carried() -> None:
    bus = Bus()
    recorder = TopicRecorder(bus, POSTS_OBSERVED)
    sent = [PostObserved(post=make_post(i), engagement=0.5, selected=True) for i in range(3)]
    for body in sent:
        await bus.publish(POSTS_OBSERVED, body)
    await bus.aclose()
    assert await recorder.bodies() == sent
