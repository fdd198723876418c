"""How a generation's next token is picked from its logits (`Sampler`)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

from runtime.providers.local.requests import Decoding


class Sampler:
    """Picks one request's next tokens, in numpy: a seeded generator of its own, a frequency penalty
    on the tokens it picked before (as OpenAI's API defines it), then temperature and nucleus (top-p)
    as mlx-lm applies them (MLX's sort and exp run one element at a time on a CPU).
    """

    NUCLEUS_FIRST = 1024
    """The nucleus is looked for among this many best tokens first, and in the whole row if wider."""

    def __init__(self, temperature: float, top_p: float, seed: int | None, frequency_penalty: float = 0.0) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.frequency_penalty = frequency_penalty
        self._rng = np.random.default_rng(seed)
        self._picked: Counter[int] = Counter()

    @classmethod
    def of(cls, request: Decoding) -> Sampler:
        """The sampler of a generation request, with its sampling settings."""
        return cls(request.temperature, request.top_p, request.seed, request.frequency_penalty)

    def pick(self, row: npt.NDArray[np.float32]) -> int:
        """The next token for one row of log-probabilities (or of logits shifted to a maximum of 0):
        each token picked before loses `frequency_penalty` for each time it was picked."""
        if self.frequency_penalty and self._picked:
            row = row.copy()
            row[list(self._picked)] -= self.frequency_penalty * np.fromiter(self._picked.values(), np.float32)
            row -= row.max()
        token = self._draw(row)
        self._picked[token] += 1
        return token

    def _draw(self, row: npt.NDArray[np.float32]) -> int:
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
