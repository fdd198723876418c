"""The numpy forward pass of llama-like mlx-lm models on a CPU: the weights (`Weights`), each
sequence's keys and values (`Kv`), and one batched pass over the tokens every row feeds.

MLX's CPU backend adds tens of microseconds to every operation, and its BLAS path packs each weight
matrix before a product with a few rows; numpy costs a microsecond or two an operation, and its
OpenBLAS reads the weights at memory speed for such products (timings in `docs/benchmarks.md`). The
weight matrices are copied from the evaluated MLX ones at load, transposed (the provider then lets
MLX's go); MLX computes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from mlx.nn.layers.positional_encoding import RoPE

from runtime.providers.local.prefix_cache import plain_kv_caches

Array = npt.NDArray[np.float32]

MODEL_TYPES = {"llama", "mistral", "qwen2"}
"""mlx-lm model types built as plain pre-norm attention and SwiGLU layers, with a `nn.RoPE`."""

FEW_ROWS = 6
"""Rows of an attention product up to which vector-matrix products beat `matmul`: a decoding row
gives as many as there are heads sharing a key (3 in the packaged model)."""

GROW = 256
"""Positions added to a decoding sequence's arrays each time they fill."""


def _array(x: mx.array) -> Array:
    return np.asarray(x.astype(mx.float32) if x.dtype != mx.float32 else x)


class _Linear:
    """A linear layer with its weight stored (inputs, outputs): OpenBLAS multiplies a few rows by a
    matrix in that layout faster than by the transpose of mlx-lm's (outputs, inputs), 1.14 times
    over a whole decode step of 8 or 16 rows (`docs/benchmarks.md`)."""

    def __init__(self, layer: Any) -> None:
        self.weight = np.ascontiguousarray(_array(layer.weight).T)
        self.bias = _array(layer.bias) if "bias" in layer else None

    def __call__(self, x: Array) -> Array:
        y: Array = x @ self.weight
        return y if self.bias is None else y + self.bias


class _Norm:
    def __init__(self, layer: Any) -> None:
        self.weight, self.eps = _array(layer.weight), float(layer.eps)

    def __call__(self, x: Array) -> Array:
        """RMSNorm as `mx.fast.rms_norm` computes it; `vecdot` sums the squares in one call, in
        half the time of `np.mean(x * x)`."""
        out: Array = x / np.sqrt(np.vecdot(x, x)[..., None] / x.shape[-1] + self.eps) * self.weight
        return out


class _Layer:
    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.q, self.k, self.v, self.o = (_Linear(getattr(attention, f"{p}_proj")) for p in "qkvo")
        self.gate, self.up, self.down = _Linear(mlp.gate_proj), _Linear(mlp.up_proj), _Linear(mlp.down_proj)
        self.attention_norm = _Norm(layer.input_layernorm)
        self.mlp_norm = _Norm(layer.post_attention_layernorm)


class Kv:
    """One sequence's keys and values in every layer. Keys are stored transposed, (layers, kv
    heads, dim, capacity), for the product with the queries; values (layers, kv heads, capacity,
    dim). The first `length` positions hold data."""

    def __init__(self, keys: Array, values: Array, length: int) -> None:
        self.keys, self.values, self.length = keys, values, length

    @classmethod
    def empty(cls, weights: Weights, capacity: int) -> Kv:
        layers, kv_heads, dim = len(weights.layers), weights.kv_heads, weights.head_dim
        keys = np.empty((layers, kv_heads, dim, capacity), dtype=np.float32)  # a position is written before read
        return cls(keys, np.empty((layers, kv_heads, capacity, dim), dtype=np.float32), 0)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def copy(self, length: int, room: int = 0) -> Self:
        """New arrays holding the first `length` positions, with room for `room` more."""
        keys = np.empty((*self.keys.shape[:3], length + room), dtype=np.float32)
        values = np.empty((*self.values.shape[:2], length + room, self.values.shape[3]), dtype=np.float32)
        keys[..., :length], values[:, :, :length] = self.keys[..., :length], self.values[:, :, :length]
        return type(self)(keys, values, length)

    def reserve(self, n: int) -> None:
        """Make room for `n` more positions, `GROW` at least when the arrays must grow."""
        if (missing := self.length + n - self.keys.shape[-1]) > 0:
            extra = max(missing, GROW)
            self.keys = np.pad(self.keys, [(0, 0), (0, 0), (0, 0), (0, extra)])
            self.values = np.pad(self.values, [(0, 0), (0, 0), (0, extra), (0, 0)])

    def attend(self, layer: int, q: Array, k: Array, v: Array) -> Array:
        """Store the keys and values of the next `m` positions in `layer` and attend to them and
        what came before: q is (m, kv heads, heads per kv head, dim), k and v (m, kv heads, dim);
        the output is (m, heads * dim)."""
        n, m = self.length, len(q)
        _, kv_heads, group, dim = q.shape
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, n : n + m], values[:, n : n + m] = k.transpose(1, 2, 0), v.transpose(1, 0, 2)
        queries = q.transpose(1, 2, 0, 3).reshape(kv_heads, group * m, dim)
        scores = _products(queries, keys[:, :, : n + m]).reshape(kv_heads, group, m, n + m)
        if m > 1:  # a new position attends to itself and those before it
            scores[..., n:] += np.triu(np.full((m, m), -np.inf, dtype=np.float32), 1)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        out = _products(scores.reshape(kv_heads, group * m, n + m), values[:, : n + m])
        out /= scores.sum(axis=-1).reshape(kv_heads, group * m, 1)
        attended: Array = out.reshape(kv_heads, group, m, dim).transpose(2, 0, 1, 3).reshape(m, -1)
        return attended


def _products(a: Array, b: Array) -> Array:
    """`a @ b` for each kv head: a (kv heads, rows, k), b (kv heads, k, columns). A decoding row
    gives a few rows (the heads sharing a key): vector-matrix products multiply those about 1.7
    times as fast as `matmul`'s BLAS call per head (`docs/benchmarks.md`)."""
    product: Array = np.vecmat(a, b[:, None]) if a.shape[1] <= FEW_ROWS else a @ b
    return product


class Weights:
    """A supported model's weights as numpy arrays, and its forward pass."""

    def __init__(self, model: Any) -> None:
        inner = model.model
        attention = inner.layers[0].self_attn
        self.layers = [_Layer(layer) for layer in inner.layers]
        self.norm = _Norm(inner.norm)
        head = getattr(model, "lm_head", None)
        self.head = _Linear(head if head is not None else inner.embed_tokens)  # tied: the embeddings
        self._embedding = None if head is None else _array(inner.embed_tokens.weight)
        """The embeddings, when the output layer is not them (tied, they are read from `head`)."""
        self.heads, self.kv_heads = int(attention.n_heads), int(attention.n_kv_heads)
        self.head_dim = self.layers[0].q.weight.shape[1] // self.heads
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
        """Why `model` cannot run here, or None when it can."""
        kind = getattr(getattr(model, "args", None), "model_type", None)
        if kind not in MODEL_TYPES:
            return f"model type {kind} is not one of {', '.join(sorted(MODEL_TYPES))}"
        rope = model.model.layers[0].self_attn.rope
        if type(rope) is not RoPE:
            return f"its positional encoding is {type(rope).__name__}"
        if not plain_kv_caches(model):
            return "some of its layers attend to a sliding window"
        return None

    def forward(self, spans: Sequence[tuple[Sequence[int], Kv]]) -> Array:
        """Feed each span's tokens after its sequence's `Kv` (which they extend); the final
        hidden states of every fed token, the spans one after the other."""
        tokens = [token for feed, _ in spans for token in feed]
        bounds = np.cumsum([0] + [len(feed) for feed, _ in spans]).tolist()
        for feed, kv in spans:
            kv.reserve(len(feed))
        positions = np.concatenate([np.arange(kv.length, kv.length + len(feed)) for feed, kv in spans])
        cos, sin = self._rotation(positions.astype(np.float32))
        qcos, qsin = cos[:, None], sin[:, None]  # queries have one more axis: the heads sharing a key
        total, heads, kv_heads, dim = len(tokens), self.heads, self.kv_heads, self.head_dim
        x: Array = self._embedding[tokens] if self._embedding is not None else self.head.weight[:, tokens].T
        for index, layer in enumerate(self.layers):
            h = layer.attention_norm(x)
            q = self._rotate(layer.q(h).reshape(total, kv_heads, heads // kv_heads, dim) * self.scale, qcos, qsin)
            k = self._rotate(layer.k(h).reshape(total, kv_heads, dim), cos, sin)
            v = layer.v(h).reshape(total, kv_heads, dim)
            attended = np.empty((total, heads * dim), dtype=np.float32)
            for (_, kv), start, end in zip(spans, bounds, bounds[1:], strict=False):
                attended[start:end] = kv.attend(index, q[start:end], k[start:end], v[start:end])
            x = x + layer.o(attended)
            h = layer.mlp_norm(x)
            gate = layer.gate(h)
            swiglu = gate * layer.up(h)
            swiglu /= 1.0 + np.exp(-gate)
            x = x + layer.down(swiglu)
        for feed, kv in spans:
            kv.length += len(feed)
        return x

    def logits(self, hidden: Array) -> Array:
        """The next-token logits after each of these final hidden states."""
        return self.head(self.norm(hidden))

    def _rotation(self, positions: Array) -> tuple[Array, Array]:
        """cos and sin of each position's angles, shaped (positions, 1, rotated features / 2)."""
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
