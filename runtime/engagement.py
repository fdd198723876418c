"""How well a post did for its author: a score in [0, 1] among that author's own posts.

A post's interaction rate is `(likes + reposts + replies) / impressions` when impressions are
known, else the raw count `likes + reposts + replies`. Its engagement score is the mid-rank
percentile of that rate among the author's posts known so far:

    score = (posts with a lower rate + 0.5 * other posts with the same rate) / (posts - 1)

so the author's best post scores 1, the worst 0, and an author's only post scores 1.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import defaultdict

from runtime.records import Metrics


def interaction_rate(metrics: Metrics) -> float:
    """Interactions per impression, or the raw interaction count without impressions."""
    interactions = metrics.likes + metrics.reposts + metrics.replies
    if metrics.impressions:
        return interactions / metrics.impressions
    return float(interactions)


class AuthorRanks:
    """The interaction rates seen per author, kept sorted."""

    def __init__(self) -> None:
        self._rates: dict[str, list[float]] = defaultdict(list)

    def add(self, author: str, metrics: Metrics) -> None:
        insort(self._rates[author], interaction_rate(metrics))

    def count(self, author: str) -> int:
        return len(self._rates[author])

    def score(self, author: str, metrics: Metrics) -> float:
        """The engagement score of a post already added with `add`."""
        rates = self._rates[author]
        rate = interaction_rate(metrics)
        if len(rates) <= 1:
            return 1.0
        below = bisect_left(rates, rate)
        same_others = bisect_right(rates, rate) - below - 1
        return (below + 0.5 * same_others) / (len(rates) - 1)
