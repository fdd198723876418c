"""`dummy://` is an honest language model: real probabilities, sampling from them."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from runtime.errors import ProviderConfigError
from runtime.providers import open_provider
from runtime.providers.calls import ChatMessage, GenerateCall, ScoreCall
from runtime.providers.dummy import DummyModel, DummyProvider

pytestmark = pytest.mark.anyio


def test_next_byte_probabilities_sum_to_one() -> None:
    model = DummyModel()
    context = b"We shipped the new onboarding today."
    total = sum(math.exp(model.score(context, bytes([b]))[0]) for b in range(256))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_text_seen_in_the_context_becomes_more_likely() -> None:
    model = DummyModel()
    target = b" Signups doubled in a week."
    cold = sum(model.score(b"Plan: write about the launch.", target))
    primed = sum(model.score(b"Plan: mention that signups doubled in a week.", target))
    assert primed > cold + 5  # several nats better: the context really informs the prediction


def test_sampling_is_reproducible_with_a_seed_and_honours_stop_and_length() -> None:
    model = DummyModel()
    kwargs = {"max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "stop": []}
    a = model.generate(b"I will", rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    b = model.generate(b"I will", rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    assert a == b
    assert a[1] == "length" and len(a[0]) == 40
    text, reason = model.generate(b"I will", rng=random.Random(7), max_tokens=400, temperature=0, top_p=1, stop=[" "])
    assert reason == "stop" and b" " not in text


def test_the_frequency_penalty_makes_bytes_already_written_less_likely() -> None:
    model = DummyModel()
    kwargs = {"max_tokens": 200, "temperature": 0.0, "top_p": 1.0, "stop": []}
    plain, _ = model.generate(b"I will", rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    damped, _ = model.generate(b"I will", rng=random.Random(7), frequency_penalty=2.0, **kwargs)  # type: ignore[arg-type]
    assert len(set(damped)) > len(set(plain))  # greedy decoding loops over a few bytes; the penalty moves it on
    assert max(Counter(damped).values()) < max(Counter(plain).values())


async def test_the_provider_scores_each_target_byte() -> None:
    provider = open_provider("dummy://?order=4", Path("unused"))
    assert isinstance(provider, DummyProvider) and provider.model == "ngram-4"
    result = await provider.score(
        ScoreCall(messages=[ChatMessage("user", "brief")], prefix="<answer>\n", target="héllo")
    )
    assert len(result.logprobs) == len("héllo".encode())
    assert all(lp < 0 for lp in result.logprobs)
    target = " Signups doubled in a week."
    cold = await provider.score(
        ScoreCall(messages=[ChatMessage("user", "Write about the launch.")], prefix="", target=target)
    )
    primed = await provider.score(
        ScoreCall(messages=[ChatMessage("user", "Say that signups doubled in a week.")], prefix="", target=target)
    )
    assert sum(primed.logprobs) > sum(cold.logprobs) + 5  # the provider's scores come from the context
    generation = await provider.generate(GenerateCall(messages=[ChatMessage("user", "hi")], max_tokens=12, seed=1))
    assert generation.output_tokens == 12 and generation.provider == "dummy://?order=4"


def test_bad_options_and_unknown_schemes_are_refused_clearly() -> None:
    with pytest.raises(ProviderConfigError, match="order must be"):
        open_provider("dummy://?order=99", Path("unused"))
    with pytest.raises(ProviderConfigError, match=r"unknown provider 'gpt://x'.*dummy://"):
        open_provider("gpt://x", Path("unused"))
