"""Decode steps in numpy for llama-like models on a CPU, with continuous batching.

A decode step feeds one token per sequence. MLX's CPU backend adds tens of microseconds to every
operation, and its BLAS path packs each weight matrix before a product with a few rows. numpy
costs a microsecond or two an operation, and its OpenBLAS reads the weights at 10-20 GB/s for such
products: a step of 8 sequences of SmolLM2-135M after 400-token prompts took 191 ms in MLX and
takes 129 ms here, sampling included (AMD Zen 3, AVX2, 2 cores, 2026-12-02).

The arrays are the model's own (numpy views of the evaluated MLX weights, no copy). Prompts are
still prefilled by MLX (`Decoder`), whose KV caches are copied here once, when a request joins.
`CpuBatch` answers `next_generated` and `remove` as mlx-lm's `BatchGenerator` does, so `Decoder`
steps either alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from mlx.nn.layers.positional_encoding import RoPE
from mlx_lm.models.cache import KVCache, make_prompt_cache

Array = npt.NDArray[np.float32]

MODEL_TYPES = {"llama", "mistral", "qwen2"}
"""mlx-lm model types built as plain pre-norm attention and SwiGLU layers, with a `nn.RoPE`."""

GROW = 256
"""Positions added to a sequence's KV arrays each time they fill."""


def plain_kv_caches(model: Any) -> bool:
    """Whether every layer of `model` keeps a plain `KVCache` (no sliding window, no quantized KV)."""
    return all(type(cache) is KVCache for cache in make_prompt_cache(model))


class Picker(Protocol):
    def pick(self, logits: Array) -> int: ...


@dataclass
class Response:
    """One sequence's new token: `finish_reason` "stop" (an end-of-sequence token, which is not
    part of the text) or "length" (`max_tokens` reached) when it is the last."""

    uid: int
    token: int
    finish_reason: str | None


def _array(x: mx.array) -> Array:
    return np.asarray(x.astype(mx.float32) if x.dtype != mx.float32 else x)


class _Linear:
    def __init__(self, layer: Any) -> None:
        self.weight = _array(layer.weight)
        self.bias = _array(layer.bias) if "bias" in layer else None

    def __call__(self, x: Array) -> Array:
        y: Array = x @ self.weight.T
        return y if self.bias is None else y + self.bias


class _Norm:
    def __init__(self, layer: Any) -> None:
        self.weight, self.eps = _array(layer.weight), float(layer.eps)

    def __call__(self, x: Array) -> Array:
        """RMSNorm as `mx.fast.rms_norm` computes it."""
        out: Array = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.weight
        return out


class _Layer:
    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.q, self.k, self.v, self.o = (_Linear(getattr(attention, f"{p}_proj")) for p in "qkvo")
        self.gate, self.up, self.down = _Linear(mlp.gate_proj), _Linear(mlp.up_proj), _Linear(mlp.down_proj)
        self.attention_norm = _Norm(layer.input_layernorm)
        self.mlp_norm = _Norm(layer.post_attention_layernorm)


class Weights:
    """numpy views of a supported model's weights, and its attention shape."""

    def __init__(self, model: Any) -> None:
        inner = model.model
        attention = inner.layers[0].self_attn
        self.layers = [_Layer(layer) for layer in inner.layers]
        self.embedding = _array(inner.embed_tokens.weight)
        self.norm = _Norm(inner.norm)
        head = getattr(model, "lm_head", None)
        self.head = _Linear(head) if head is not None else None
        self.heads, self.kv_heads = int(attention.n_heads), int(attention.n_kv_heads)
        self.head_dim = self.layers[0].q.weight.shape[0] // self.heads
        self.scale = float(attention.scale)
        rope: RoPE = attention.rope
        dims = int(rope.dims)
        self._pairs = (
            (slice(0, dims, 2), slice(1, dims, 2))
            if rope.traditional
            else (slice(0, dims // 2), slice(dims // 2, dims))
        )
        self.rope_frequencies = (rope.scale * rope.base ** (-np.arange(0, dims, 2) / dims)).astype(np.float32)

    @staticmethod
    def unsupported(model: Any) -> str | None:
        """Why `model` cannot be decoded here, or None when it can."""
        kind = getattr(getattr(model, "args", None), "model_type", None)
        if kind not in MODEL_TYPES:
            return f"model type {kind} is not one of {', '.join(sorted(MODEL_TYPES))}"
        rope = model.model.layers[0].self_attn.rope
        if type(rope) is not RoPE:
            return f"its positional encoding is {type(rope).__name__}"
        if not plain_kv_caches(model):
            return "some of its layers attend to a sliding window"
        return None

    def logits(self, tokens: Sequence[int], rows: Sequence[_Row]) -> Array:
        """Feed `tokens[i]` to `rows[i]` at its next position; the next-token logits, one row each."""
        x: Array = self.embedding[list(tokens)]
        cos, sin = self._rotation(np.array([row.length for row in rows], dtype=np.float32))
        qcos, qsin = cos[:, None], sin[:, None]  # queries have one more axis: the heads sharing a key
        batch, heads, kv_heads, dim = len(rows), self.heads, self.kv_heads, self.head_dim
        for index, layer in enumerate(self.layers):
            h = layer.attention_norm(x)
            q = self._rotate(layer.q(h).reshape(batch, kv_heads, heads // kv_heads, dim) * self.scale, qcos, qsin)
            k = self._rotate(layer.k(h).reshape(batch, kv_heads, dim), cos, sin)
            v = layer.v(h).reshape(batch, kv_heads, dim)
            attended = np.empty((batch, heads * dim), dtype=np.float32)
            for b, row in enumerate(rows):
                attended[b] = row.attend(index, q[b], k[b], v[b]).reshape(-1)
            x = x + layer.o(attended)
            h = layer.mlp_norm(x)
            gate = layer.gate(h)
            swiglu = gate * layer.up(h)
            swiglu /= 1.0 + np.exp(-gate)
            x = x + layer.down(swiglu)
        for row in rows:
            row.length += 1
        x = self.norm(x)
        return self.head(x) if self.head is not None else x @ self.embedding.T  # tied embeddings

    def _rotation(self, positions: Array) -> tuple[Array, Array]:
        """cos and sin of each position's angles, shaped (rows, 1, rotated features / 2)."""
        angles = positions[:, None, None] * self.rope_frequencies
        return np.cos(angles), np.sin(angles)

    def _rotate(self, x: Array, cos: Array, sin: Array) -> Array:
        """RoPE as `nn.RoPE` applies it: to adjacent pairs (traditional) or to the two halves of
        the first `rope.dims` features, each pair turned by its position's angle."""
        first, second = self._pairs
        out = x.copy()
        out[..., first] = x[..., first] * cos - x[..., second] * sin
        out[..., second] = x[..., first] * sin + x[..., second] * cos
        return out


class _Row:
    """One sequence: its KV arrays (keys stored transposed, for the product with the queries), the
    positions they hold, and what to do with its next token."""

    def __init__(self, weights: Weights, cache: list[Any], token: int, max_tokens: int, picker: Picker) -> None:
        self.length = int(cache[0].offset) if cache and cache[0].keys is not None else 0
        self.token, self.max_tokens, self.picker, self.produced = token, max_tokens, picker, 0
        shape = (len(weights.layers), weights.kv_heads, weights.head_dim)
        capacity = self.length + min(max_tokens + 1, GROW)
        self.keys = np.zeros((*shape, capacity), dtype=np.float32)
        self.values = np.zeros((shape[0], shape[1], capacity, shape[2]), dtype=np.float32)
        if self.length:
            mx.eval([array for layer in cache for array in (layer.keys, layer.values)])
            for index, layer in enumerate(cache):
                self.keys[index, :, :, : self.length] = _array(layer.keys)[0, :, : self.length].swapaxes(-1, -2)
                self.values[index, :, : self.length] = _array(layer.values)[0, :, : self.length]

    def attend(self, layer: int, q: Array, k: Array, v: Array) -> Array:
        """Store this position's key and value in `layer`; its attention output, (heads, dim)."""
        n = self.length
        if n == self.keys.shape[-1]:
            self.keys = np.pad(self.keys, [(0, 0), (0, 0), (0, 0), (0, GROW)])
            self.values = np.pad(self.values, [(0, 0), (0, 0), (0, GROW), (0, 0)])
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, n], values[:, n] = k, v
        scores = q @ keys[:, :, : n + 1]  # (kv heads, group, positions)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        out: Array = scores @ values[:, : n + 1]
        out /= scores.sum(axis=-1, keepdims=True)
        return out


class CpuBatch:
    """Sequences decoded together one step at a time; they join and leave between steps."""

    def __init__(self, weights: Weights, stop_tokens: Sequence[int]) -> None:
        self._weights = weights
        self._stop = set(stop_tokens)
        self._rows: dict[int, _Row] = {}
        self._uids = itertools.count()

    def insert(self, last_token: int, cache: list[Any], max_tokens: int, picker: Picker) -> int:
        """Start a sequence whose prompt, but for `last_token`, `cache` holds; its uid."""
        uid = next(self._uids)
        self._rows[uid] = _Row(self._weights, cache, last_token, max_tokens, picker)
        return uid

    def remove(self, uids: Sequence[int]) -> None:
        for uid in uids:
            self._rows.pop(uid, None)

    def next_generated(self) -> list[Response]:
        """One step for every sequence: each one's new token."""
        if not self._rows:
            return []
        uids, rows = list(self._rows), list(self._rows.values())
        logits = self._weights.logits([row.token for row in rows], rows)
        logits -= logits.max(axis=-1, keepdims=True)
        responses = []
        for uid, row, scores in zip(uids, rows, logits, strict=True):
            row.token = row.picker.pick(scores)
            row.produced += 1
            reason = "stop" if row.token in self._stop else "length" if row.produced >= row.max_tokens else None
            if reason is not None:
                del self._rows[uid]
            responses.append(Response(uid, row.token, reason))
        return responses
