"""The cache of recent prompts' keys and values that both local engines keep (`PrefixCache`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Generic, Protocol, Self, TypeVar

from mlx_lm.models.cache import KVCache, make_prompt_cache


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
