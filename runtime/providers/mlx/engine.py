"""What the two engines of the `mlx://` provider share: the requests they serve, how a request's
next token is picked, and the cache of recent prompts' keys and values.

An engine (`numpy_engine.NumpyEngine` on a CPU for the models it supports, else
`mlx_engine.MlxEngine`) is used from the provider's model thread: `add` takes a request, `step`
advances every request it holds and returns those that finished.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt
from mlx_lm.models.cache import KVCache, make_prompt_cache


@dataclass(eq=False)
class Decoding:
    """One generation request (two alike are still two requests)."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None

    def accept_token(self, token: int, end: str | None, tokenizer: Any) -> bool:
        """Add a decoded token; whether the request is finished. `end` is "stop" for an
        end-of-sequence token (not part of the text) and "length" for the last token allowed; a
        stop string in the text also finishes it, the text cut before it."""
        if end != "stop":
            self.tokens.append(token)
        self.text = tokenizer.decode(self.tokens)
        hit = next((s for s in self.stop if s and s in self.text), None)
        if hit is not None:
            self.text = self.text[: self.text.index(hit)]
            self.finish_reason = "stop"
        elif end is not None:
            self.finish_reason = end
        return self.finish_reason is not None


@dataclass(eq=False)
class Scoring:
    """One scoring request: the log-probability of each target token after the context."""

    context: list[int]
    target: list[int]
    logprobs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.context or not self.target:
            raise ValueError("scoring needs at least one context token and one target token")


Request = Decoding | Scoring


@dataclass
class Tokens:
    """Prompt tokens a role's requests found in the prefix cache, and tokens computed, since start."""

    reused: int = 0
    computed: int = 0


def plain_kv_caches(model: Any) -> bool:
    """Whether every layer of `model` keeps a plain `KVCache` (no sliding window, no quantized KV)."""
    return all(type(cache) is KVCache for cache in make_prompt_cache(model))


class Prefix(Protocol):
    """The keys and values of a token sequence, as an engine keeps them."""

    @property
    def nbytes(self) -> int: ...

    def copy(self, length: int) -> Self:
        """New arrays holding the first `length` positions, which writing to leaves this as it is."""
        ...


P = TypeVar("P", bound=Prefix)


class PrefixCache(Generic[P]):
    """The keys and values of recent token sequences. A request whose tokens share a prefix with one
    of them starts from a copy of that prefix and computes only the rest: a post's calls (the same
    system prompt, brief and post; plans that share their start; the two rewrites of a section)
    pay for what they share once, and so do posts mined side by side, whose calls interleave. The
    least recently used entries go first past `budget_bytes` (0 turns the cache off).
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[int, ...], P] = OrderedDict()

    @property
    def usable(self) -> bool:
        return self.budget_bytes > 0

    @property
    def bytes(self) -> int:
        """Memory the stored entries hold."""
        return sum(entry.nbytes for entry in self._entries.values())

    def longest(self, tokens: Sequence[int]) -> tuple[int, P | None]:
        """How many of `tokens` a stored entry holds, and that entry (to copy, not to write to)."""
        shared, source = 0, None
        for key in self._entries:
            if (n := common_prefix(key, tokens)) > shared:
                shared, source = n, key
        if source is None:
            return 0, None
        self._entries.move_to_end(source)
        return shared, self._entries[source]

    def store(self, tokens: Sequence[int], prefix: P) -> None:
        """Keep `prefix`, which holds the keys and values of `tokens` and is not written to after.
        An entry it extends is dropped: every sequence that entry would serve, the new one serves."""
        key = tuple(tokens)
        if not self.usable or not key:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        for old in [k for k in self._entries if len(k) < len(key) and key[: len(k)] == k]:
            del self._entries[old]
        self._entries[key] = prefix
        while self.bytes > self.budget_bytes and len(self._entries) > 1:
            del self._entries[next(iter(self._entries))]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Sampler:
    """Picks one request's next token, in numpy: a seeded generator of its own, temperature and
    nucleus (top-p) as mlx-lm applies them (MLX's sort and exp run one element at a time on a CPU).
    """

    NUCLEUS_FIRST = 1024
    """The nucleus is looked for among this many best tokens first, and in the whole row if wider."""

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self._rng = np.random.default_rng(seed)

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
