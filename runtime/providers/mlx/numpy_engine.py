"""The numpy engine: llama-like mlx-lm models on a CPU, every request a row of one forward pass.

MLX's CPU backend adds tens of microseconds to every operation, and its BLAS path packs each
weight matrix before a product with a few rows. numpy costs a microsecond or two an operation, and
its OpenBLAS reads the weights at 10-20 GB/s for such products: a decode step of 8 sequences of
SmolLM2-135M after 400-token prompts took 191 ms in MLX and takes 129 ms here (AMD Zen 3, AVX2,
2 cores, 2026-12-02).

Each `step` feeds every row its pending tokens in one pass: a decoding request its last token, or
on joining its prompt after the longest cached prefix; a scoring request its context and target
after the longest cached prefix; `CHUNK` tokens at most a row, the rest in the next steps. The
weights are read once a step for all of them, so a prefill or a scoring costs the products of its
own tokens rather than a pass of its own. The arrays are the model's own (numpy views of the
evaluated MLX weights, no copy); MLX computes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from mlx.nn.layers.positional_encoding import RoPE

from runtime import metrics
from runtime.providers.mlx.engine import (
    Decoding,
    PrefixCache,
    Request,
    Sampler,
    Scoring,
    Tokens,
    common_prefix,
    plain_kv_caches,
)

Array = npt.NDArray[np.float32]

MODEL_TYPES = {"llama", "mistral", "qwen2"}
"""mlx-lm model types built as plain pre-norm attention and SwiGLU layers, with a `nn.RoPE`."""

GROW = 256
"""Positions added to a decoding sequence's arrays each time they fill."""
CHUNK = 512
"""Tokens a row feeds in one step at most: a long prompt is fed over several steps, so a step's
attention scores stay small (positions fed times positions held) and other rows keep decoding."""


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
        scores = (queries @ keys[:, :, : n + m]).reshape(kv_heads, group, m, n + m)
        if m > 1:  # a new position attends to itself and those before it
            scores[..., n:] += np.triu(np.full((m, m), -np.inf, dtype=np.float32), 1)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        out = scores.reshape(kv_heads, group * m, n + m) @ values[:, : n + m]
        out /= scores.sum(axis=-1).reshape(kv_heads, group * m, 1)
        attended: Array = out.reshape(kv_heads, group, m, dim).transpose(2, 0, 1, 3).reshape(m, -1)
        return attended


class Weights:
    """numpy views of a supported model's weights, and its forward pass."""

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
        x: Array = self.embedding[tokens]
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
        x = self.norm(hidden)
        return self.head(x) if self.head is not None else x @ self.embedding.T  # tied embeddings

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


class _Row:
    """A request in the batch: its sequence's `Kv`, the tokens still to feed, how many of the last of
    them give wanted logits, and the tokens to keep in the prefix cache once they are all computed
    (None after)."""

    def __init__(self, request: Request, kv: Kv, pending: list[int], outputs: int, computed: list[int]) -> None:
        self.request, self.kv, self.pending, self.outputs = request, kv, pending, outputs
        self.to_cache: list[int] | None = computed
        self.sampler = (
            Sampler(request.temperature, request.top_p, request.seed) if isinstance(request, Decoding) else None
        )


def _needs(request: Request) -> tuple[list[int], int]:
    """The tokens whose keys and values a request's first steps compute, and how many of the last
    of them give wanted logits: a decoding's prompt, whose last token predicts the first new one; a
    scoring's context and target but the last target token, from the last context token on."""
    if isinstance(request, Decoding):
        return request.prompt, 1
    return request.context + request.target[:-1], len(request.target)


class NumpyEngine:
    """Requests join between steps; each step feeds all of them in one forward pass."""

    name = "numpy"

    def __init__(self, model: Any, tokenizer: Any, budget_bytes: int) -> None:
        self._weights = Weights(model)
        self._tokenizer = tokenizer
        self._stop = set(tokenizer.eos_token_ids)
        self._prefixes: PrefixCache[Kv] = PrefixCache(budget_bytes)
        self._joining: list[Request] = []
        self._rows: list[_Row] = []
        self.generation, self.scoring = Tokens(), Tokens()

    @property
    def busy(self) -> bool:
        return bool(self._rows or self._joining)

    def add(self, request: Request) -> None:
        self._joining.append(request)

    def step(self) -> list[Request]:
        """Feed every row its next tokens; the requests that finished."""
        self._join()
        rows = self._rows
        if not rows:
            return []
        if decoding := sum(isinstance(row.request, Decoding) for row in rows):
            metrics.decode_batch.record(decoding)
        fed = [row.pending[:CHUNK] for row in rows]
        hidden = self._weights.forward([(span, row.kv) for span, row in zip(fed, rows, strict=True)])
        wanted, end = [], 0
        for span, row in zip(fed, rows, strict=True):
            end += len(span)
            row.pending = row.pending[len(span) :]
            outputs = max(0, row.outputs - len(row.pending))  # the wanted positions in this span
            wanted.append(np.arange(end - outputs, end))
        logits = self._weights.logits(hidden[np.concatenate(wanted)])
        self._rows, finished, start = [], [], 0
        for row, positions in zip(rows, wanted, strict=True):
            if row.to_cache is not None and not row.pending:  # a scoring's arrays are not written to after
                stored = row.kv if isinstance(row.request, Scoring) else row.kv.copy(len(row.to_cache))
                self._prefixes.store(row.to_cache, stored)
                row.to_cache = None
            if positions.size and self._sample_next(row, logits[start : start + positions.size]):
                finished.append(row.request)
            else:
                self._rows.append(row)
            start += positions.size
        return finished

    def _join(self) -> None:
        """Start the joining requests from the longest cached prefix. One that shares more with a
        request whose tokens are not all computed yet (one joining before it in the same step, or
        one still being fed) waits, then finds that one's prefix in the cache."""
        joining, self._joining = self._joining, []
        started = [row.to_cache for row in self._rows if row.to_cache is not None]
        for request in joining:
            computed, outputs = _needs(request)
            reusable = computed[:-outputs]
            shared, source = self._prefixes.longest(reusable)
            if self._prefixes.usable and any(common_prefix(reusable, other) > shared for other in started):
                self._joining.append(request)
                continue
            started.append(computed)
            feed = computed[shared:]
            room = len(feed) + (min(request.max_tokens, GROW) if isinstance(request, Decoding) else 0)
            kv = source.copy(shared, room) if source is not None else Kv.empty(self._weights, room)
            counts = self.scoring if isinstance(request, Scoring) else self.generation
            counts.reused += shared
            counts.computed += len(feed)
            self._rows.append(_Row(request, kv, feed, outputs, computed))

    def _sample_next(self, row: _Row, logits: Array) -> bool:
        """Hand a row the logits of its wanted positions in this step; whether its request is finished."""
        request = row.request
        row.outputs -= len(logits)
        if isinstance(request, Scoring):
            done = len(request.logprobs)
            targets = request.target[done : done + len(logits)]
            top = logits.max(axis=-1, keepdims=True)
            logsumexp = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
            request.logprobs += (logits[np.arange(len(targets)), targets] - logsumexp).tolist()
            return row.outputs == 0
        assert row.sampler is not None
        scores = logits[-1]
        token = row.sampler.pick(scores - scores.max())
        end = "stop" if token in self._stop else "length" if len(request.tokens) + 1 >= request.max_tokens else None
        row.pending, row.outputs = [token], 1
        return request.accept_token(token, end, self._tokenizer)
