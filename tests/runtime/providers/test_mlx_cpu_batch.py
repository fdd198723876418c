"""Decode steps in numpy compute what the MLX model computes, and decode what mlx-lm decodes."""

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

import runtime.providers.mlx  # noqa: F401  (loads OpenBLAS before mlx.core)
from runtime.providers.mlx import cpu_batch
from runtime.providers.mlx.engine import Decoder, Decoding, PrefixCache


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
def test_steps_compute_the_model_s_logits_for_rows_of_any_length(traditional: bool, tied: bool, bias: bool) -> None:
    """Both RoPE layouts, tied and separate output layers, with and without biases (norm weights vary with them)."""
    model = random_llama(traditional, tied, bias)
    weights = cpu_batch.Weights(model)
    prompts = [[5, 9, 30, 2, 7, 44, 1], [11, 3], [60, 61, 62, 63]]
    rows, caches = [], []
    for prompt in prompts:
        cache = make_prompt_cache(model)
        model(mx.array([prompt[:-1]]), cache=cache)
        caches.append(cache)
        rows.append(cpu_batch._Row(weights, cache, prompt[-1], max_tokens=3, picker=None))  # type: ignore[arg-type]
    tokens = [prompt[-1] for prompt in prompts]
    for step in range(3):  # past the rows' first capacity (max_tokens + 1), so the arrays grow
        got = weights.logits(tokens, rows)
        for b, cache in enumerate(caches):
            want = np.asarray(model(mx.array([[tokens[b]]]), cache=cache)[0, -1])
            np.testing.assert_allclose(got[b], want, atol=2e-4, err_msg=f"row {b}, step {step}")
        tokens = [int(t) for t in got.argmax(axis=-1)]


@pytest.mark.parametrize("grow", [cpu_batch.GROW, 3])
def test_the_numpy_decoder_decodes_what_mlx_lm_decodes(tiny: Path, grow: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy and seeded requests of different lengths, joining at different steps, give the same
    tokens and finish reasons in both engines (with the KV arrays growing often, for `grow` 3)."""
    model, tokenizer = load(str(tiny))[:2]
    monkeypatch.setattr(cpu_batch, "GROW", grow)

    def decode() -> list[tuple[list[int], str | None]]:
        decoder = Decoder(model, tokenizer, PrefixCache(model, 1 << 20))
        requests = [
            Decoding(tokenizer.encode("We shipped the new onboarding" * n), 9 + n, t, 0.9, n, [])
            for n, t in [(1, 0.0), (2, 0.8), (3, 0.0)]
        ]
        decoder.add(requests[0])
        decoder.step()
        for request in requests[1:]:
            decoder.add(request)
        while decoder.busy:
            decoder.step()
        return [(r.tokens, r.finish_reason) for r in requests]

    numpy_engine = decode()
    monkeypatch.setattr(cpu_batch.Weights, "unsupported", staticmethod(lambda model: "a test"))
    assert Decoder(model, tokenizer, PrefixCache(model, 1 << 20)).engine == "decoding in mlx-lm (a test)"
    assert numpy_engine == decode()
    assert [len(tokens) for tokens, _ in numpy_engine] == [10, 11, 12]


def test_models_it_cannot_decode_are_named() -> None:
    model = random_llama(True, True)
    assert cpu_batch.Weights.unsupported(model) is None
    model.args.model_type = "gemma"
    assert "model type gemma" in (cpu_batch.Weights.unsupported(model) or "")
    model.args.model_type = "llama"
    scaling = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 1024}
    model.model.layers[0].self_attn.rope = initialize_rope(8, 10000.0, False, scaling, 4096)
    assert "positional encoding is Llama3RoPE" in (cpu_batch.Weights.unsupported(model) or "")
