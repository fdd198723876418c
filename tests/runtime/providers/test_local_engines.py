"""The numpy engine computes what the MLX model computes, and decodes and scores as the MLX engine does."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_map
from mlx_lm import load
from mlx_lm.models import llama
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.models.rope_utils import initialize_rope

import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
from runtime.providers.local import numpy_model, scheduler
from runtime.providers.local.mlx_engine import MlxEngine
from runtime.providers.local.numpy_engine import NumpyEngine
from runtime.providers.local.numpy_model import Kv, Weights
from runtime.providers.local.prefix_cache import PrefixCache
from runtime.providers.local.requests import Decoding, Request, Scoring


def random_llama(traditional: bool, tied: bool, bias: bool = False) -> llama.Model:
    mx.random.seed(3)
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=48,
        num_hidden_layers=2,
        intermediate_size=96,
        num_attention_heads=6,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=120,
        rope_traditional=traditional,
        tie_word_embeddings=tied,
        attention_bias=bias,
        mlp_bias=bias,
    )
    model = llama.Model(args)
    model.update({"model": {"embed_tokens": {"weight": mx.random.normal((120, 48))}}})  # spread the logits
    if bias:
        model.update(tree_map(lambda p: p + mx.random.normal(p.shape) * 0.1 if p.ndim == 1 else p, model.parameters()))
    mx.eval(model.parameters())
    return model


@pytest.mark.parametrize(("traditional", "tied", "bias"), [(True, True, False), (False, False, True)])
def test_the_forward_pass_computes_the_model_s_logits_for_spans_of_any_length(
    traditional: bool, tied: bool, bias: bool
) -> None:
    """Both RoPE layouts, tied and separate output layers, with and without biases (norm weights
    vary with them). Each step feeds the sequences spans of different lengths side by side, some of
    one token, some of several (which attend to each other causally), and the arrays grow."""
    model = random_llama(traditional, tied, bias)
    weights = Weights(model)
    spans_by_step = [
        [[5, 9, 30, 2, 7, 44, 1], [11], [60, 61, 62, 63]],
        [[8], [3, 4, 5, 6, 7, 8, 9, 10, 11], [64]],
        [[12, 13], [1], [65, 66, 67]],
    ]
    caches = [make_prompt_cache(model) for _ in spans_by_step[0]]
    kvs = [Kv.empty(weights, 2) for _ in caches]  # too small from the first step: they grow
    for step, spans in enumerate(spans_by_step):
        got = weights.logits(weights.forward(list(zip(spans, kvs, strict=True))))
        start = 0
        for b, (span, cache) in enumerate(zip(spans, caches, strict=True)):
            want = np.asarray(model(mx.array([span]), cache=cache)[0])
            np.testing.assert_allclose(got[start : start + len(span)], want, atol=2e-4, err_msg=f"{step=}, {b=}")
            start += len(span)
    assert [kv.length for kv in kvs] == [10, 11, 8]


def run(engine: NumpyEngine | MlxEngine, waves: list[list[Request]]) -> None:
    """Add each wave of requests, step once, and so on; then step until every request is done."""
    for wave in waves:
        for request in wave:
            engine.add(request)
        engine.step()
    while engine.busy:
        engine.step()


@pytest.mark.parametrize(("grow", "chunk"), [(numpy_model.GROW, scheduler.CHUNK), (3, 4)])
def test_the_numpy_engine_decodes_and_scores_what_the_mlx_engine_does(
    tiny: Path, grow: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy and seeded generations of different lengths (one with a frequency penalty) and scorings,
    joining at different steps, give the same tokens, finish reasons and log-probabilities in both
    engines, from the prefix cache and without it (with `grow` 3 the arrays grow often; with `chunk` 4
    prompts and scorings are fed over several steps, their wanted positions spread over them)."""
    model, tokenizer = load(str(tiny))[:2]
    monkeypatch.setattr(numpy_model, "GROW", grow)
    monkeypatch.setattr(scheduler, "CHUNK", chunk)
    prompt = tokenizer.encode("We shipped the new onboarding")

    def outcome(engine: NumpyEngine | MlxEngine) -> tuple[list[tuple[list[int], str | None]], list[list[float]]]:
        decodings = [
            Decoding(prompt * n, 9 + n, t, 0.9, n, [], penalty)
            for n, t, penalty in [(1, 0.0, 0.0), (2, 0.8, 0.0), (3, 0.0, 0.0), (3, 0.0, 2.0)]
        ]
        scorings = [Scoring(prompt * 2, prompt[:3]), Scoring(prompt, prompt * 2), Scoring(prompt[:1], prompt[1:2])]
        groups: list[list[Decoding | Scoring]] = [
            [decodings[0], scorings[0]],
            [decodings[1], scorings[1], decodings[2]],
            [scorings[2], decodings[3]],
        ]
        run(engine, groups)
        return [(r.tokens, r.finish_reason) for r in decodings], [r.logprobs for r in scorings]

    budgets = (1 << 20, 0)
    numpy_runs = [outcome(NumpyEngine(model, tokenizer, budget)) for budget in budgets]
    mlx_runs = [outcome(MlxEngine(model, tokenizer, budget, 16, "a test")) for budget in budgets]
    for (decoded, scored), (mlx_decoded, mlx_scored) in zip(numpy_runs, mlx_runs, strict=True):
        assert decoded == mlx_decoded
        assert [len(tokens) for tokens, _ in decoded] == [10, 11, 12, 12]
        assert decoded[3][0] != decoded[2][0]  # the frequency penalty moved a greedy decoding off its path
        for logprobs, expected in zip(scored, mlx_scored, strict=True):
            assert logprobs == pytest.approx(expected, abs=1e-4)
            assert len(logprobs) == len(expected) > 0


@pytest.mark.parametrize("chunk", [scheduler.CHUNK, 4])
def test_a_request_sharing_a_longer_prefix_with_one_being_computed_waits_for_it(
    tiny: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rewrites of a section ask with the same prompt at once: the first prefills it (in one step, or
    over several with `chunk` 4), the others wait until it is cached, then compute nothing; each
    decodes what it decodes alone (two alike, the same seed, are two requests)."""
    model, tokenizer = load(str(tiny))[:2]
    monkeypatch.setattr(scheduler, "CHUNK", chunk)
    prompt = tokenizer.encode("Rewrite the hook of this plan: we shipped the new onboarding today")

    def decode(seeds: list[int]) -> tuple[list[list[int]], tuple[int, int]]:
        engine = NumpyEngine(model, tokenizer, 1 << 20)
        requests = [Decoding(prompt, 8, 0.8, 0.9, seed, []) for seed in seeds]
        run(engine, [list[Request](requests)])
        return [r.tokens for r in requests], (engine.generation.reused, engine.generation.computed)

    together, (reused, computed) = decode([1, 2, 1])
    alone = [decode([1])[0][0], decode([2])[0][0]]
    assert together == [alone[0], alone[1], alone[0]] and alone[0] != alone[1]
    assert (reused, computed) == (2 * (len(prompt) - 1), len(prompt) + 2)  # the others fed their last token only


def test_models_it_cannot_run_are_named() -> None:
    model = random_llama(True, True)
    assert Weights.unsupported(model) is None
    model.args.model_type = "gemma"
    assert "model type gemma" in (Weights.unsupported(model) or "")
    model.args.model_type = "llama"
    scaling = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 1024}
    model.model.layers[0].self_attn.rope = initialize_rope(8, 10000.0, False, scaling, 4096)
    assert "positional encoding is Llama3RoPE" in (Weights.unsupported(model) or "")


class Held:
    """A stand-in for an engine's keys and values: `nbytes` a byte a position."""

    def __init__(self, length: int) -> None:
        self.length = length

    @property
    def nbytes(self) -> int:
        return self.length

    def copy(self, length: int) -> Held:
        return Held(length)


def test_the_prefix_cache_serves_the_longest_prefix_and_keeps_to_its_budget() -> None:
    cache: PrefixCache[Held] = PrefixCache(budget_bytes=10)
    cache.store([1, 2, 3], Held(3))
    cache.store([1, 2, 3, 4, 5], Held(5))  # extends the first, which goes
    cache.store([7, 8], Held(2))
    assert cache.bytes == 7
    shared, held = cache.longest([1, 2, 3, 4, 9])
    assert shared == 4 and held is not None and held.length == 5
    cache.store([9, 9, 9, 9], Held(4))  # past the budget: the least recently used, [7, 8], goes
    assert cache.bytes == 9 and cache.longest([7, 8]) == (0, None)
    assert cache.longest([1, 2])[0] == 2
    off: PrefixCache[Held] = PrefixCache(budget_bytes=0)
    off.store([1, 2], Held(2))
    assert off.longest([1, 2]) == (0, None) and not off.usable


def test_adding_a_request_computes_nothing_until_the_next_step(tiny: Path) -> None:
    """The engines' `add` only queues (the `Engine` Protocol): the model thread's step does the work."""
    model, tokenizer = load(str(tiny))[:2]
    prompt = tokenizer.encode("We shipped the new onboarding")
    for engine in (NumpyEngine(model, tokenizer, 1 << 20), MlxEngine(model, tokenizer, 1 << 20, 4, "a test")):
        # two requests that share no prefix: neither waits for the other
        scoring, decoding = Scoring(prompt, prompt[:2]), Decoding(prompt[::-1], 3, 0.0, 1.0, None, [])
        engine.add(scoring)
        engine.add(decoding)
        assert engine.busy and scoring.logprobs == [] and decoding.tokens == []
        assert (engine.scoring.computed, engine.generation.computed) == (0, 0)
        assert engine.step() == [scoring] and len(scoring.logprobs) == 2, engine.name
        assert engine.generation.computed > 0
