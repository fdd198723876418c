"""The numpy engine: llama-like mlx-lm models on a CPU, every request a row of one forward pass.

A step asks the `scheduler` what each row feeds, runs the rows in one batched forward pass
(`numpy_model`), and hands each row the logits of its wanted positions: a scoring keeps the
log-probabilities of its target tokens, a generation samples its next token (`sampling`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime import metrics
from runtime.providers.local.numpy_model import Array, Kv, Weights
from runtime.providers.local.prefix_cache import PrefixCache
from runtime.providers.local.requests import Decoding, Request, Scoring, Tokens
from runtime.providers.local.scheduler import Row, Scheduler


class NumpyEngine:
    """Requests join between steps; each step feeds all of them in one forward pass."""

    name = "numpy"

    def __init__(self, model: Any, tokenizer: Any, budget_bytes: int) -> None:
        self._weights = Weights(model)
        self._tokenizer = tokenizer
        self._stop = set(tokenizer.eos_token_ids)
        self._scheduler = Scheduler(PrefixCache(budget_bytes), lambda room: Kv.empty(self._weights, room))

    @property
    def busy(self) -> bool:
        return self._scheduler.busy

    @property
    def generation(self) -> Tokens:
        return self._scheduler.generation

    @property
    def scoring(self) -> Tokens:
        return self._scheduler.scoring

    def add(self, request: Request) -> None:
        self._scheduler.add(request)

    def step(self) -> list[Request]:
        """Feed every row its next tokens; the requests that finished."""
        batch = self._scheduler.schedule()
        if not batch:
            return []
        if decoding := sum(isinstance(fed.row.request, Decoding) for fed in batch):
            metrics.decode_batch.record(decoding)
        hidden = self._weights.forward([(fed.tokens, fed.row.kv) for fed in batch])
        ends = np.cumsum([len(fed.tokens) for fed in batch])
        wanted = np.concatenate([np.arange(end - fed.wanted, end) for fed, end in zip(batch, ends, strict=True)])
        logits = self._weights.logits(hidden[wanted])
        finished, start = [], 0
        for fed in batch:
            self._scheduler.computed(fed.row)
            if fed.wanted:
                next_token, done = self._take(fed.row, logits[start : start + fed.wanted])
                self._scheduler.settle(fed.row, fed.wanted, next_token, done)
                if done:
                    finished.append(fed.row.request)
            start += fed.wanted
        return finished

    def _take(self, row: Row, logits: Array) -> tuple[int | None, bool]:
        """Hand a row the logits of its wanted positions in this step: the token it feeds next (a
        generation's), and whether its request is finished."""
        request = row.request
        if isinstance(request, Scoring):
            done = len(request.logprobs)
            targets = request.target[done : done + len(logits)]
            top = logits.max(axis=-1, keepdims=True)
            picked = logits[np.arange(len(targets)), targets] - top[:, 0]
            np.exp(np.subtract(logits, top, out=logits), out=logits)  # in place: no copies of a large array
            request.logprobs += (picked - np.log(logits.sum(axis=-1))).tolist()
            return None, row.outputs == len(logits)
        assert row.sampler is not None
        scores = logits[-1]
        token = row.sampler.pick(scores - scores.max())
        end = "stop" if token in self._stop else "length" if len(request.tokens) + 1 >= request.max_tokens else None
        return token, request.accept_token(token, end, self._tokenizer)
