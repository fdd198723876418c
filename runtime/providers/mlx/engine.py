"""The MLX model runtime, used from one thread: exact scoring with prefix reuse, batched decoding."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import KVCache, make_prompt_cache, trim_prompt_cache

from runtime import metrics
from runtime.providers.mlx import cpu, cpu_batch


def output_layer(model: Any) -> Any:
    """The function from final hidden states to logits, when the model exposes them separately."""
    inner = getattr(model, "model", None)
    if inner is None:
        return None
    if getattr(model, "lm_head", None) is not None:
        return model.lm_head
    embed = getattr(inner, "embed_tokens", None)
    return embed.as_linear if embed is not None else None


class PrefixCache:
    """KV caches of recent token sequences, shared by the scorer and the decoder. A sequence that
    shares a prefix with one of them starts from a copy of that prefix and computes only the rest:
    a post's calls (the same system prompt, brief and post; plans that share their start; the two
    rewrites of a section) pay for what they share once, and so do posts mined side by side, whose
    calls interleave. The least recently used entries go first past `budget_bytes`.

    Only for models whose every layer keeps a plain `KVCache` (llama-like ones); `usable` says so.
    """

    def __init__(self, model: Any, budget_bytes: int) -> None:
        self.model = model
        self.budget_bytes = budget_bytes
        self.usable = budget_bytes > 0 and cpu_batch.plain_kv_caches(model)
        self._entries: OrderedDict[tuple[int, ...], list[Any]] = OrderedDict()
        self._sizes: dict[tuple[int, ...], int] = {}

    @property
    def bytes(self) -> int:
        """Memory the stored caches hold."""
        return sum(self._sizes.values())

    def longest(self, tokens: Sequence[int]) -> tuple[int, list[Any]]:
        """How many of `tokens` a stored cache already holds, and a new cache holding them."""
        shared, source = 0, None
        if self.usable:
            for key in self._entries:
                if (n := _common_prefix(key, tokens)) > shared:
                    shared, source = n, key
        if source is None:
            return 0, make_prompt_cache(self.model)
        self._entries.move_to_end(source)
        return shared, _copy(self._entries[source], shared)

    def store(self, tokens: Sequence[int], cache: list[Any]) -> None:
        """Keep `cache`, which holds the KV of `tokens`. An entry it extends is dropped: every
        sequence that entry would serve, the new one serves."""
        key = tuple(tokens)
        if not self.usable or not key:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        for old in [k for k in self._entries if len(k) < len(key) and key[: len(k)] == k]:
            self._drop(old)
        kept = _copy(cache, len(key))
        mx.eval([array for c in kept for array in (c.keys, c.values)])
        self._entries[key] = kept
        self._sizes[key] = sum(c.keys.nbytes + c.values.nbytes for c in kept)
        while self.bytes > self.budget_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        del self._entries[key], self._sizes[key]


class Scorer:
    """Log-probabilities of target tokens after context tokens.

    A sequence starts from the longest prefix `prefixes` holds and computes only from there, so
    candidates sharing the brief (and the plan's start) pay for it once, even when other posts'
    calls come between; without a usable prefix cache, the last scored sequence is kept for the
    next. The output layer is applied only at the positions that predict target tokens.
    """

    def __init__(self, model: Any, prefixes: PrefixCache) -> None:
        self.model = model
        self._head = output_layer(model)
        self._prefixes = prefixes
        self._last: tuple[list[int], list[Any]] = ([], make_prompt_cache(model))
        self.reused_tokens = 0
        self.computed_tokens = 0

    def score(self, context: list[int], target: list[int]) -> list[float]:
        if not context or not target:
            raise ValueError("scoring needs at least one context token and one target token")
        sequence = context + target
        reusable = sequence[: len(context) - 1]  # the last context token is fed, to predict target[0]
        if self._prefixes.usable:
            keep, cache = self._prefixes.longest(reusable)
        else:
            tokens, cache = self._last
            keep = _common_prefix(tokens, reusable)
            trim_prompt_cache(cache, len(tokens) - keep)
        fed = sequence[keep:-1]
        first = len(context) - 1 - keep  # index in `fed` whose output predicts target[0]
        inputs = mx.array([fed])
        if self._head is not None:
            hidden = self.model.model(inputs, cache=cache)
            logits = self._head(hidden[:, first:, :])
        else:
            logits = self.model(inputs, cache=cache)[:, first:, :]
        logits = logits[0].astype(mx.float32)
        wanted = mx.take_along_axis(logits, mx.array(target)[:, None], axis=-1)[:, 0]
        picked = wanted - cpu.logsumexp(logits)[:, 0]
        mx.eval(picked)
        if self._prefixes.usable:
            self._prefixes.store(sequence[:-1], cache)
        else:
            self._last = (sequence[:-1], cache)
        self.reused_tokens += keep
        self.computed_tokens += len(fed)
        return cast(list[float], picked.tolist())


def _copy(cache: list[Any], length: int) -> list[Any]:
    """New caches holding the first `length` positions of `cache` (MLX slices are new arrays, so
    writing into the copy leaves the original as it was)."""
    copies = []
    for layer in cache:
        copy = KVCache()
        if length and layer.keys is not None:
            copy.keys, copy.values = layer.keys[..., :length, :], layer.values[..., :length, :]
            copy.offset = length
        copies.append(copy)
    return copies


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Sampler:
    """Picks one request's next token, in numpy: a seeded generator of its own, temperature and
    nucleus (top-p) as mlx-lm applies them.

    mlx-lm calls a request's sampler on its own row of the batch; MLX's sort and exp run one
    element at a time on a CPU, which made sampling cost more than the decode step.
    """

    NUCLEUS_FIRST = 1024
    """The nucleus is looked for among this many best tokens first, and in the whole row if wider."""

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self._rng = np.random.default_rng(seed)

    def __call__(self, logprobs: mx.array) -> mx.array:
        """The token for one row of mlx-lm's batch."""
        values = logprobs.astype(mx.float32)  # numpy has no bfloat16 (models on Metal may use it)
        mx.eval(values)
        return mx.array([self.pick(np.asarray(values).reshape(-1))])

    def pick(self, row: npt.NDArray[np.float32]) -> int:
        """The token for one row of log-probabilities (or of logits shifted to a maximum of 0)."""
        if self.temperature <= 0:
            return int(row.argmax())
        candidates = np.flatnonzero(row >= self._threshold(row)) if 0 < self.top_p < 1 else np.arange(row.size)
        weights = np.exp((row[candidates] - row[candidates].max()) / self.temperature).cumsum()
        pick = min(int(np.searchsorted(weights, self._rng.random() * weights[-1], side="right")), weights.size - 1)
        return int(candidates[pick])

    def _threshold(self, row: npt.NDArray[np.float32]) -> float:
        """The lowest log-probability kept: the best tokens whose mass above it is under top_p."""
        total = float(np.exp(row).sum())
        best = (
            np.partition(row, row.size - self.NUCLEUS_FIRST)[-self.NUCLEUS_FIRST :]
            if row.size > self.NUCLEUS_FIRST
            else row
        )
        if float(np.exp(best).sum()) < self.top_p * total:
            best = row
        ordered = np.sort(best)[::-1]
        mass_above = np.concatenate(([0.0], np.cumsum(np.exp(ordered))[:-1]))
        return float(ordered[np.count_nonzero(mass_above < self.top_p * total) - 1])


@dataclass
class Decoding:
    """One generation request in a batch."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


class Decoder:
    """Continuous batching: requests join and leave between steps.

    A prompt starts from the longest prefix `prefixes` holds; only the rest is prefilled here, by
    MLX, and counted. Steps run in numpy (`cpu_batch`) for the models it supports on a CPU, else
    in mlx-lm's BatchGenerator (which prefills whole prompts itself when the prefix cache is off).
    """

    def __init__(self, model: Any, tokenizer: Any, prefixes: PrefixCache, max_batch: int = 16) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._prefixes = prefixes
        why = "the model runs on a GPU" if mx.default_device() != mx.cpu else cpu_batch.Weights.unsupported(model)
        self._batch: cpu_batch.CpuBatch | BatchGenerator
        if why is None:
            self._batch = cpu_batch.CpuBatch(cpu_batch.Weights(model), tokenizer.eos_token_ids)
            self.engine = "decoding in numpy"
        else:
            self._batch = BatchGenerator(
                model,
                stop_tokens=[[t] for t in tokenizer.eos_token_ids],
                completion_batch_size=max_batch,
                prefill_batch_size=min(8, max_batch),
            )
            self.engine = f"decoding in mlx-lm ({why})"
        self._active: dict[int, Decoding] = {}
        self.reused_tokens = 0
        self.computed_tokens = 0

    @property
    def busy(self) -> bool:
        return bool(self._active)

    def add(self, request: Decoding) -> None:
        sampler = Sampler(request.temperature, request.top_p, request.seed)
        body = request.prompt[:-1]  # the last token is fed by the first step
        if isinstance(self._batch, BatchGenerator) and not self._prefixes.usable:
            (uid,) = self._batch.insert([request.prompt], max_tokens=[request.max_tokens], samplers=[sampler])
            self.computed_tokens += len(body)
        else:
            shared, cache = self._prefixes.longest(body)
            self.reused_tokens += shared
            self.computed_tokens += len(body) - shared
            if len(body) > shared:
                inner = getattr(self._model, "model", self._model)  # the layers without the output head
                inner(mx.array([body[shared:]]), cache=cache)
            self._prefixes.store(body, cache)
            if isinstance(self._batch, BatchGenerator):
                (uid,) = self._batch.insert(
                    [request.prompt[-1:]], max_tokens=[request.max_tokens], caches=[cache], samplers=[sampler]
                )
            else:
                uid = self._batch.insert(request.prompt[-1], cache, request.max_tokens, sampler)
        self._active[uid] = request

    def step(self) -> list[Decoding]:
        """Advance every active request by one token; returns those that finished."""
        metrics.decode_batch.record(len(self._active))
        finished = []
        stopped = []
        for response in self._batch.next_generated():
            request = self._active.get(response.uid)
            if request is None:
                continue
            if response.finish_reason != "stop":
                request.tokens.append(response.token)
            request.text = self._tokenizer.decode(request.tokens)
            hit = next((s for s in request.stop if s and s in request.text), None)
            if hit is not None:
                request.text = request.text[: request.text.index(hit)]
                request.finish_reason = "stop"
                if response.finish_reason is None:  # still decoding in the batch: take it out
                    stopped.append(response.uid)
            elif response.finish_reason is not None:
                request.finish_reason = response.finish_reason
            if request.finish_reason is not None:
                finished.append(self._active.pop(response.uid))
        if stopped:
            self._batch.remove(stopped)
        return finished
