"""The CPU fast paths compute what MLX's own attention, SiLU, log-sum-exp, products and mlx-lm's
sampling compute."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import mlx.core as mx
import numpy as np
import pytest
from mlx import nn
from mlx_lm.sample_utils import apply_top_p

import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
from runtime.providers.local import cpu
from runtime.providers.local.sampling import Sampler


@pytest.fixture
def active() -> Iterator[None]:
    cpu.activate()
    yield
    cpu._local.active = False


def qkv(batch: int, heads: int, kv_heads: int, length: int, span: int) -> tuple[mx.array, mx.array, mx.array]:
    mx.random.seed(batch * 1000 + length)
    return (
        mx.random.normal((batch, heads, length, 16)) * 2,
        mx.random.normal((batch, kv_heads, span, 16)) * 2,
        mx.random.normal((batch, kv_heads, span, 16)),
    )


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "length", "span"),
    [(1, 4, 2, 80, 80), (2, 6, 2, 40, 100), (8, 9, 3, 1, 300), (1, 2, 2, 3, 5)],
)
def test_causal_attention_matches_mlx(
    active: None, batch: int, heads: int, kv_heads: int, length: int, span: int
) -> None:
    q, k, v = qkv(batch, heads, kv_heads, length, span)
    mask = "causal" if length > 1 else None
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
    assert mx.allclose(cpu.attention(q, k, v, 0.25, mask), want, atol=1e-5).item()


@pytest.mark.parametrize("per_head", [False, True])
def test_masks_from_batched_caches_match_mlx(active: None, per_head: bool) -> None:
    """Left-padded batches pass a boolean mask per sequence; a fully masked row stays finite."""
    q, k, v = qkv(3, 6, 2, 50, 60)
    pad = mx.array([0, 7, 59])[:, None, None, None]
    mask = (mx.arange(60)[None, None, None, :] >= pad) & (mx.arange(10, 60)[:, None] >= mx.arange(60)[None])
    if per_head:  # each query head its own mask: heads must be grouped as MLX groups them
        mask = mask & (mx.random.uniform(shape=(3, 6, 50, 60)) < 0.7) | (mx.arange(60) == mx.arange(10, 60)[:, None])
    got = cpu.attention(q, k, v, 0.25, mask)
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
    assert mx.allclose(got[:2], want[:2], atol=1e-5).item()
    assert mx.all(mx.isfinite(got)).item()  # the third sequence has rows that see nothing
    additive = mx.where(mask, 0.0, -mx.inf)
    assert mx.allclose(cpu.attention(q, k, v, 0.25, additive)[:2], want[:2], atol=1e-5).item()


def test_exp_swiglu_and_logsumexp_match_mlx(active: None) -> None:
    x = mx.random.normal((300, 700)) * 8
    assert mx.allclose(cpu.exp(x * 1), mx.exp(x), rtol=1e-5).item()  # MLX's exp is within 1e-6, numpy's closer
    silu = nn.silu(x)  # type: ignore[attr-defined]
    assert mx.allclose(cpu.swiglu(x, x + 1), silu * (x + 1), rtol=1e-5, atol=1e-6).item()
    assert mx.allclose(cpu.logsumexp(x * 1), mx.logsumexp(x, axis=-1, keepdims=True), rtol=1e-6).item()


def test_only_active_threads_take_the_fast_path() -> None:
    """The provider's model thread opts in; a plain mlx-lm model elsewhere in the process does not."""
    seen: list[bool] = []

    def model_thread() -> None:
        cpu.activate()
        y = mx.random.normal((100, 100))
        seen.append(cpu.exp(y) is y)  # computed in place, in y's buffer

    thread = threading.Thread(target=model_thread)
    thread.start()
    thread.join()
    y = mx.random.normal((100, 100))
    assert seen == [True] and cpu.exp(y) is not y


@pytest.mark.parametrize(("spread", "top_p"), [(4.0, 0.9), (0.05, 0.9), (2.0, 0.3)])
def test_the_sampler_keeps_the_nucleus_mlx_lm_keeps(spread: float, top_p: float) -> None:
    """Peaked rows have a small nucleus; a flat row (spread 0.05) has one wider than the first 1,024."""
    logits = mx.random.normal((5000,), key=mx.random.key(7)) * spread
    logprobs = logits - mx.logsumexp(logits)
    sampler = Sampler(1.0, top_p, seed=1)
    row = np.asarray(logprobs)
    kept = row >= sampler._threshold(row)
    assert np.array_equal(kept, np.isfinite(np.asarray(apply_top_p(logprobs[None], top_p)[0])))
    assert (kept.sum() > Sampler.NUCLEUS_FIRST) == (spread < 1)


def test_the_sampler_is_seeded_greedy_at_zero_and_follows_the_distribution() -> None:
    logprobs = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    assert Sampler(0.0, 1.0, seed=None).pick(logprobs) == 0
    draws = [Sampler(1.0, 1.0, seed=3).pick(logprobs) for _ in range(3)]
    assert len(set(draws)) == 1  # the same seed, the same first draw
    sampler = Sampler(1.0, 1.0, seed=5)
    counts = np.bincount([sampler.pick(logprobs) for _ in range(4000)], minlength=4) / 4000
    assert np.allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    nucleus = Sampler(1.0, 0.7, seed=5)  # 0.5 + 0.3 reach 0.7: the last two are never drawn
    assert {nucleus.pick(logprobs) for _ in range(300)} == {0, 1}


def test_the_frequency_penalty_takes_its_value_off_a_token_for_each_time_it_was_generated() -> None:
    logprobs = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    greedy = Sampler(0.0, 1.0, seed=None, frequency_penalty=0.4)
    assert [greedy.pick(logprobs) for _ in range(4)] == [0, 0, 1, 0]  # 0.4 off token 0 is not enough; 0.8 is
    assert [Sampler(0.0, 1.0, seed=None).pick(logprobs) for _ in range(4)] == [0, 0, 0, 0]  # no penalty
    assert np.array_equal(logprobs, np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32)))  # not changed
    draws = []
    for seed in range(3000):
        sampler = Sampler(1.0, 1.0, seed=seed, frequency_penalty=np.log(2))
        first = sampler.pick(logprobs)
        if first == 0:
            draws.append(sampler.pick(logprobs))  # token 0 was picked once: half its weight
    counts = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(counts, np.array([0.25, 0.3, 0.15, 0.05]) / 0.75, atol=0.04)
