"""The MLX engine, for GPUs and for the models the numpy engine does not support: each step scores
and prefills in MLX the requests that arrived since the last one, then takes a decode step in
mlx-lm's `BatchGenerator` (continuous batching).
"""

from __future__ import annotations

from typing import Any, Self, cast

import mlx.core as mx
import numpy as np
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import KVCache, make_prompt_cache, trim_prompt_cache

from runtime import metrics
from runtime.providers.local import cpu
from runtime.providers.local.prefix_cache import PrefixCache, common_prefix, plain_kv_caches
from runtime.providers.local.requests import Decoding, Request, Scoring, Tokens
from runtime.providers.local.sampling import Sampler


class Caches:
    """A sequence's mlx-lm caches, one per layer, as the prefix cache keeps them."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers

    @property
    def nbytes(self) -> int:
        return sum(c.keys.nbytes + c.values.nbytes for c in self.layers if c.keys is not None)

    def copy(self, length: int) -> Self:
        """MLX slices are new arrays, so writing into the copy leaves these as they are."""
        copies = []
        for layer in self.layers:
            copy = KVCache()
            if length and layer.keys is not None:
                copy.keys, copy.values = layer.keys[..., :length, :], layer.values[..., :length, :]
                copy.offset = length
            copies.append(copy)
        mx.eval([array for c in copies if c.keys is not None for array in (c.keys, c.values)])
        return type(self)(copies)


def output_layer(model: Any) -> Any:
    """The function from final hidden states to logits, when the model exposes them separately."""
    inner = getattr(model, "model", None)
    if inner is None:
        return None
    if getattr(model, "lm_head", None) is not None:
        return model.lm_head
    embed = getattr(inner, "embed_tokens", None)
    return embed.as_linear if embed is not None else None


class MlxEngine:
    """Scoring requests are computed in the step after they are added, from the longest cached
    prefix (or, without a usable prefix cache, the last scored sequence's), applying the output
    layer only where target tokens are predicted. A decoding request's prompt is prefilled from the
    longest cached prefix in the step after it is added; its steps run in mlx-lm's `BatchGenerator`
    (which prefills whole prompts itself when the prefix cache is off). Prefix caching needs every
    layer to keep a plain `KVCache`.
    """

    def __init__(self, model: Any, tokenizer: Any, budget_bytes: int, max_batch: int, why: str) -> None:
        self.name = f"mlx-lm ({why})"
        self._model = model
        self._tokenizer = tokenizer
        self._head = output_layer(model)
        self._prefixes: PrefixCache[Caches] = PrefixCache(budget_bytes if plain_kv_caches(model) else 0)
        self._last: tuple[list[int], Caches] = ([], Caches(make_prompt_cache(model)))
        self._batch = BatchGenerator(
            model,
            stop_tokens=[[t] for t in tokenizer.eos_token_ids],
            completion_batch_size=max_batch,
            prefill_batch_size=min(8, max_batch),
        )
        self._active: dict[int, Decoding] = {}
        self._queued: list[Request] = []
        self.generation, self.scoring = Tokens(), Tokens()

    @property
    def busy(self) -> bool:
        return bool(self._active or self._queued)

    def add(self, request: Request) -> None:
        self._queued.append(request)

    def step(self) -> list[Request]:
        queued, self._queued = self._queued, []
        finished: list[Request] = []
        for added in queued:
            if isinstance(added, Scoring):
                added.logprobs = self._score(added.context, added.target)
                finished.append(added)
            else:
                self._start(added)
        if not self._active:
            return finished
        metrics.decode_batch.record(len(self._active))
        stopped = []
        for response in self._batch.next_generated():
            request = self._active.get(response.uid)
            if request is None:
                continue
            if request.accept_token(response.token, response.finish_reason, self._tokenizer):
                finished.append(self._active.pop(response.uid))
                if response.finish_reason is None:  # a stop string: still decoding in the batch
                    stopped.append(response.uid)
        if stopped:
            self._batch.remove(stopped)
        return finished

    def _start(self, request: Decoding) -> None:
        """Prefill a generation's prompt from the longest cached prefix and put it in the batch."""
        sampler = Sampler.of(request)
        body = request.prompt[:-1]  # the last token is fed by the first step
        if not self._prefixes.usable:
            (uid,) = self._batch.insert(
                [request.prompt], max_tokens=[request.max_tokens], samplers=[_mlx_lm_sampler(sampler)]
            )
            self.generation.computed += len(request.prompt)
        else:
            shared, cache = self._cached(body)
            self.generation.reused += shared
            self.generation.computed += len(request.prompt) - shared  # the last token by the first step
            if len(body) > shared:
                inner = getattr(self._model, "model", self._model)  # the layers without the output head
                inner(mx.array([body[shared:]]), cache=cache.layers)
            self._prefixes.store(body, cache.copy(len(body)))
            (uid,) = self._batch.insert(
                [request.prompt[-1:]],
                max_tokens=[request.max_tokens],
                caches=[cache.layers],
                samplers=[_mlx_lm_sampler(sampler)],
            )
        self._active[uid] = request

    def _cached(self, tokens: list[int]) -> tuple[int, Caches]:
        """How many of `tokens` the prefix cache holds, and new caches holding them."""
        shared, source = self._prefixes.longest(tokens)
        return shared, source.copy(shared) if source is not None else Caches(make_prompt_cache(self._model))

    def _score(self, context: list[int], target: list[int]) -> list[float]:
        sequence = context + target
        reusable = sequence[: len(context) - 1]  # the last context token is fed, to predict target[0]
        if self._prefixes.usable:
            keep, cache = self._cached(reusable)
        else:
            tokens, cache = self._last
            keep = common_prefix(tokens, reusable)
            trim_prompt_cache(cache.layers, len(tokens) - keep)
        fed = sequence[keep:-1]
        first = len(context) - 1 - keep  # index in `fed` whose output predicts target[0]
        inputs = mx.array([fed])
        if self._head is not None:
            hidden = self._model.model(inputs, cache=cache.layers)
            logits = self._head(hidden[:, first:, :])
        else:
            logits = self._model(inputs, cache=cache.layers)[:, first:, :]
        logits = logits[0].astype(mx.float32)
        wanted = mx.take_along_axis(logits, mx.array(target)[:, None], axis=-1)[:, 0]
        picked = wanted - cpu.logsumexp(logits)[:, 0]
        mx.eval(picked)
        if self._prefixes.usable:
            self._prefixes.store(sequence[:-1], cache.copy(len(sequence) - 1))
        else:
            self._last = (sequence[:-1], cache)
        self.scoring.reused += keep
        self.scoring.computed += len(fed)
        return cast(list[float], picked.tolist())


def _mlx_lm_sampler(sampler: Sampler) -> Any:
    """`sampler` as mlx-lm's `BatchGenerator` calls it, on a request's own row of the batch."""

    def pick(logprobs: mx.array) -> mx.array:
        values = logprobs.astype(mx.float32)  # numpy has no bfloat16 (models on Metal may use it)
        mx.eval(values)
        return mx.array([sampler.pick(np.asarray(values).reshape(-1))])

    return pick
