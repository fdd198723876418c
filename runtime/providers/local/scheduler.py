"""What each row of the numpy engine feeds in a step: admission of new requests from the longest
cached prefix, waits for a prefix still being computed, and chunking of long prompts.

Requests join between steps. Each step, every row feeds its pending tokens, `CHUNK` at most: a
decoding request its last token, or on joining its prompt after the longest cached prefix; a
scoring request its context and target after the longest cached prefix. Feeding them all in one
forward pass reads the weights once a step for all of them, so a prefill or a scoring costs the
products of its own tokens rather than a pass of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.providers.local import numpy_model
from runtime.providers.local.numpy_model import Kv
from runtime.providers.local.prefix_cache import PrefixCache, common_prefix
from runtime.providers.local.requests import Decoding, Request, Scoring, Tokens
from runtime.providers.local.sampling import Sampler

CHUNK = 512
"""Tokens a row feeds in one step at most: a long prompt is fed over several steps, so a step's
attention scores stay small (positions fed times positions held) and other rows keep decoding."""


class Row:
    """A request in the batch: its sequence's `Kv`, the tokens still to feed, how many of the last of
    them give wanted logits, and the tokens to keep in the prefix cache once they are all computed
    (None after)."""

    def __init__(self, request: Request, kv: Kv, pending: list[int], outputs: int, computed: list[int]) -> None:
        self.request, self.kv, self.pending, self.outputs = request, kv, pending, outputs
        self.to_cache: list[int] | None = computed
        self.sampler = Sampler.of(request) if isinstance(request, Decoding) else None


@dataclass(frozen=True)
class Fed:
    """What a row feeds in this step, and how many of the last of those positions give wanted logits."""

    row: Row
    tokens: list[int]
    wanted: int


def needs(request: Request) -> tuple[list[int], int]:
    """The tokens whose keys and values a request's first steps compute, and how many of the last
    of them give wanted logits: a decoding's prompt, whose last token predicts the first new one; a
    scoring's context and target but the last target token, from the last context token on."""
    if isinstance(request, Decoding):
        return request.prompt, 1
    return request.context + request.target[:-1], len(request.target)


class Scheduler:
    """The rows of the numpy engine and what each feeds; `new_kv(room)` makes an empty sequence."""

    def __init__(self, prefixes: PrefixCache[Kv], new_kv: Callable[[int], Kv]) -> None:
        self._prefixes = prefixes
        self._new_kv = new_kv
        self._joining: list[Request] = []
        self.rows: list[Row] = []
        self.generation, self.scoring = Tokens(), Tokens()

    @property
    def busy(self) -> bool:
        return bool(self.rows or self._joining)

    def add(self, request: Request) -> None:
        self._joining.append(request)

    def schedule(self) -> list[Fed]:
        """Admit the joining requests that can start, then take each row's next tokens."""
        self._join()
        batch = []
        for row in self.rows:
            tokens, row.pending = row.pending[:CHUNK], row.pending[CHUNK:]
            batch.append(Fed(row, tokens, max(0, row.outputs - len(row.pending))))
        return batch

    def computed(self, row: Row) -> None:
        """The row's fed tokens are in its `Kv` now: keep its sequence in the prefix cache once all
        of it is computed (a scoring's arrays are not written to after; a decoding's are copied)."""
        if row.to_cache is not None and not row.pending:
            stored = row.kv if isinstance(row.request, Scoring) else row.kv.copy(len(row.to_cache))
            self._prefixes.store(row.to_cache, stored)
            row.to_cache = None

    def settle(self, row: Row, outputs: int, next_token: int | None, finished: bool) -> None:
        """The row gave `outputs` wanted positions' logits; a finished row leaves the batch, and a
        decoding one feeds `next_token` in the next step."""
        row.outputs -= outputs
        if finished:
            self.rows.remove(row)
        elif next_token is not None:
            row.pending, row.outputs = [next_token], 1

    def _join(self) -> None:
        """Start the joining requests from the longest cached prefix. One that shares more with a
        request whose tokens are not all computed yet (one joining before it in the same step, or
        one still being fed) waits, then finds that one's prefix in the cache."""
        joining, self._joining = self._joining, []
        started = [row.to_cache for row in self.rows if row.to_cache is not None]
        for request in joining:
            computed, outputs = needs(request)
            reusable = computed[:-outputs]
            shared, source = self._prefixes.longest(reusable)
            if self._prefixes.usable and any(common_prefix(reusable, other) > shared for other in started):
                self._joining.append(request)
                continue
            started.append(computed)
            feed = computed[shared:]
            room = len(feed) + (min(request.max_tokens, numpy_model.GROW) if isinstance(request, Decoding) else 0)
            kv = source.copy(shared, room) if source is not None else self._new_kv(room)
            counts = self.scoring if isinstance(request, Scoring) else self.generation
            counts.reused += shared
            counts.computed += len(feed)
            self.rows.append(Row(request, kv, feed, outputs, computed))
