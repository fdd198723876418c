"""`dummy://`: a small, honest language model for tests and demos, needing no weights.

It is a byte-level n-gram model: a mixture of a Witten-Bell smoothed model of a small built-in
English corpus and a cache model of the prompt itself (so text that was in the prompt becomes more
likely, as with a real model in context). Scores are true log-probabilities under that mixture and
generation samples from the same distribution, so a plan that shares words with a post really does
lower the post's score. Tokens are bytes.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from runtime.errors import ProviderConfigError
from runtime.providers.base import Description, render_chat
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores

Counts = dict[bytes, dict[int, int]]


class NgramCounts:
    """Counts of each byte after each history of up to `order - 1` bytes."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.next: Counts = defaultdict(lambda: defaultdict(int))
        self.total: dict[bytes, int] = defaultdict(int)

    def add(self, history: bytes, byte: int) -> None:
        """Count `byte` after every suffix of `history` shorter than the order."""
        for k in range(min(len(history), self.order - 1) + 1):
            h = history[len(history) - k :]
            self.next[h][byte] += 1
            self.total[h] += 1

    def add_text(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            self.add(data[max(0, i - self.order + 1) : i], byte)

    def prob(self, history: bytes, byte: int) -> float:
        """Witten-Bell interpolated probability of `byte` after `history`."""
        p = 1.0 / 256
        for k in range(min(len(history), self.order - 1) + 1):
            h = history[len(history) - k :]
            total = self.total.get(h, 0)
            if total == 0:
                break
            following = self.next[h]
            types = len(following)
            p = (following.get(byte, 0) + types * p) / (total + types)
        return p

    def candidates(self, history: bytes) -> set[int]:
        """Bytes seen after some suffix of `history`."""
        found: set[int] = set()
        for k in range(min(len(history), self.order - 1) + 1):
            following = self.next.get(history[len(history) - k :])
            if following:
                found.update(following)
        return found


@cache
def corpus_counts(order: int) -> NgramCounts:
    """The background model, built once per order from the packaged corpus."""
    counts = NgramCounts(order)
    counts.add_text(resources.files("runtime.providers").joinpath("dummy_corpus.txt").read_bytes())
    return counts


class DummyModel:
    """The mixture `weight * background + (1 - weight) * cache-of-the-prompt`."""

    def __init__(self, order: int = 5, weight: float = 0.5) -> None:
        self.order = order
        self.weight = weight
        self.background = corpus_counts(order)

    def _start(self, context: bytes) -> NgramCounts:
        cache_model = NgramCounts(self.order)
        cache_model.add_text(context)
        return cache_model

    def _prob(self, cache_model: NgramCounts, history: bytes, byte: int) -> float:
        return self.weight * self.background.prob(history, byte) + (1 - self.weight) * cache_model.prob(history, byte)

    def score(self, context: bytes, target: bytes) -> list[float]:
        """Log-probability of each byte of `target` after `context`."""
        cache_model = self._start(context)
        text = bytearray(context)
        logprobs = []
        for byte in target:
            history = bytes(text[-(self.order - 1) :])
            logprobs.append(math.log(self._prob(cache_model, history, byte)))
            cache_model.add(history, byte)
            text.append(byte)
        return logprobs

    def generate(
        self,
        context: bytes,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        rng: random.Random,
        frequency_penalty: float = 0.0,
    ) -> tuple[bytes, str]:
        """Sample up to `max_tokens` bytes; returns them and the finish reason. A byte already
        sampled `k` times has its probability times `exp(-frequency_penalty * k)`."""
        cache_model = self._start(context)
        text = bytearray(context)
        out = bytearray()
        written: Counter[int] = Counter()
        stops = [s.encode() for s in stop if s]
        for _ in range(max_tokens):
            history = bytes(text[-(self.order - 1) :])
            byte = self._sample(cache_model, history, temperature, top_p, rng, frequency_penalty, written)
            written[byte] += 1
            cache_model.add(history, byte)
            text.append(byte)
            out.append(byte)
            for s in stops:
                if out.endswith(s):
                    return bytes(out[: -len(s)]), "stop"
        return bytes(out), "length"

    def _sample(
        self,
        cache_model: NgramCounts,
        history: bytes,
        temperature: float,
        top_p: float,
        rng: random.Random,
        frequency_penalty: float,
        written: Counter[int],
    ) -> int:
        options = sorted(self.background.candidates(history) | cache_model.candidates(history))
        probs = [self._prob(cache_model, history, b) * math.exp(-frequency_penalty * written[b]) for b in options]
        if temperature <= 0:
            return options[max(range(len(options)), key=probs.__getitem__)]
        weights = sorted(((p ** (1.0 / temperature), b) for p, b in zip(probs, options, strict=True)), reverse=True)
        total = sum(w for w, _ in weights)
        kept, mass = [], 0.0
        for w, b in weights:
            kept.append((w, b))
            mass += w / total
            if mass >= top_p:
                break
        return rng.choices([b for _, b in kept], weights=[w for w, _ in kept])[0]


class DummyProvider:
    """The provider behind `dummy://`. Query options: `order` (n-gram order), `weight`."""

    system = "dummy"
    address: tuple[str, int] | None = None
    capacity: int | None = None

    def __init__(self, uri: str = "dummy://", order: int = 5, weight: float = 0.5) -> None:
        self.uri = uri
        self.model = f"ngram-{order}"
        self._model = DummyModel(order, weight)

    @classmethod
    def open(cls, uri: str, data_dir: Path) -> DummyProvider:
        query = parse_qs(urlsplit(uri).query)
        try:
            order = int(query.get("order", ["5"])[0])
            weight = float(query.get("weight", ["0.5"])[0])
        except ValueError as exc:
            raise ProviderConfigError(f"bad option in {uri!r}: {exc}") from exc
        if not 1 <= order <= 12 or not 0 <= weight <= 1:
            raise ProviderConfigError(f"bad option in {uri!r}: order must be 1-12 and weight 0-1")
        return cls(uri, order, weight)

    async def check(self, role: Role) -> str:
        return f"byte-level {self.model} model"

    def describe(self) -> Description:
        return Description()

    async def generate(self, call: GenerateCall) -> Generation:
        context = (render_chat(call.messages) + call.prefill).encode()
        rng = random.Random(call.seed)
        data, reason = await anyio.to_thread.run_sync(
            lambda: self._model.generate(
                context,
                max_tokens=call.max_tokens,
                temperature=call.temperature,
                top_p=call.top_p,
                stop=call.stop,
                rng=rng,
                frequency_penalty=call.frequency_penalty,
            )
        )
        return Generation(
            text=data.decode("utf-8", errors="ignore"),
            input_tokens=len(context),
            output_tokens=len(data),
            finish_reason=reason,
            provider=self.uri,
        )

    async def score(self, call: ScoreCall) -> TokenScores:
        context = (render_chat(call.messages) + call.prefix).encode()
        logprobs = await anyio.to_thread.run_sync(self._model.score, context, call.target.encode())
        return TokenScores(logprobs=logprobs, input_tokens=len(context), provider=self.uri)

    async def aclose(self) -> None:
        return None
