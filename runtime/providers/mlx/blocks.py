"""A second copy of a model's weight matrices, in column blocks, for decoding on a CPU.

A decode step multiplies one row per sequence in the batch by every weight matrix. For such a
product OpenBLAS first packs the whole matrix, which reads it at about 12 GB/s on the machines we
measured. Cut into blocks of 64 output columns, each stored contiguously, every block is small
enough for OpenBLAS's small-matrix kernels, which work on it in place at 18-22 GB/s: decoding 8
sequences went from 105 to 134 tokens/s with SmolLM2-135M. Products with more rows (prompts,
scoring) keep the plain layout, where packing pays off.

The copy doubles the memory of the weights, so `install` makes it only when the weights fit
`MAX_COPY_BYTES` and the blocks measure faster on this machine (OpenBLAS builds without those
kernels pack each block instead, which is slower).
"""

from __future__ import annotations

import time
from typing import Any, cast

import mlx.core as mx
from mlx.nn.layers.base import Module
from mlx.nn.layers.embedding import Embedding
from mlx.nn.layers.linear import Linear
from mlx.utils import tree_flatten, tree_map_with_path

BLOCK = 64
"""Output columns per block."""

MAX_ROWS = 8
"""Products with at most this many rows use the blocks."""

MAX_COPY_BYTES = 2 * 1024**3


class BlockedLinear(Module):
    """A linear layer whose weight is also kept as (out/BLOCK, in, BLOCK) contiguous blocks, the
    last one padded with zeros."""

    def __init__(self, weight: mx.array, bias: mx.array | None = None) -> None:
        super().__init__()
        out, inputs = weight.shape
        self.weight = weight
        padded = mx.pad(weight, [(0, -out % BLOCK), (0, 0)])
        self.blocks = mx.contiguous(padded.reshape(-1, BLOCK, inputs).swapaxes(1, 2))
        if bias is not None:
            self.bias = bias

    def __call__(self, x: mx.array) -> mx.array:
        rows, out = x.size // x.shape[-1], self.weight.shape[0]
        if rows <= MAX_ROWS:
            y = (x.reshape(rows, -1) @ self.blocks).swapaxes(0, 1).reshape(rows, -1)
            y = (y if y.shape[1] == out else y[:, :out]).reshape(*x.shape[:-1], out)
        else:
            y = x @ self.weight.T
        return y + self.bias if "bias" in self else y


class BlockedEmbedding(Module):
    """An embedding table whose `as_linear` (a tied output layer) uses the blocks."""

    def __init__(self, weight: mx.array) -> None:
        super().__init__()
        self.table = BlockedLinear(weight)

    def __call__(self, ids: mx.array) -> mx.array:
        return self.table.weight[ids]

    def as_linear(self, x: mx.array) -> mx.array:
        return self.table(x)


def install(model: Module, measure: bool = True) -> str:
    """Give `model`'s float matrices a block copy when that is worth it here; says what was done."""
    leaves = cast(dict[str, mx.array], tree_flatten(model.parameters(), destination={}))
    size = sum(leaf.nbytes for leaf in leaves.values())
    if size > MAX_COPY_BYTES:
        return f"plain weights ({size / 1024**3:.1f} GiB is too large to copy)"
    if measure and (speedup := _speedup()) < 1.1:
        return f"plain weights (blocks measured {speedup:.2f}x here)"

    def blocked(_: str, module: Module) -> Module:
        weight = module.get("weight") if isinstance(module, (Linear, Embedding)) else None
        if weight is None or weight.dtype != mx.float32:
            return module
        if isinstance(module, Embedding):
            return BlockedEmbedding(weight)
        return BlockedLinear(weight, module.get("bias"))

    model.update_modules(tree_map_with_path(blocked, model.leaf_modules(), is_leaf=Module.is_module))
    mx.eval(model.parameters())
    return "weights in blocks for decoding"


def _speedup(rows: int = MAX_ROWS, out: int = 1536, inputs: int = 576, repeat: int = 20) -> float:
    """How many times faster decode-shaped products are with blocks than plain, on this machine."""
    key = mx.random.key(0)  # leaves MLX's global random state alone
    weights = [mx.random.normal((out, inputs), key=k) for k in mx.random.split(key, repeat)]  # distinct, as layers
    layers = [BlockedLinear(w) for w in weights]
    x = mx.random.normal((rows, inputs), key=key)
    mx.eval(x, [layer.parameters() for layer in layers])

    def timed(run: Any) -> float:
        mx.eval(run())
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            mx.eval(run())
            best = min(best, time.perf_counter() - started)
        return best

    plain = timed(lambda: [x @ w.T for w in weights])
    blocks = timed(lambda: [layer(x) for layer in layers])
    return plain / blocks
