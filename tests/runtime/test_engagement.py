"""The engagement score: a mid-rank percentile among the author's own posts."""

from __future__ import annotations

from runtime.engagement import AuthorRanks, interaction_rate
from runtime.records import Metrics


def m(likes: int, impressions: int | None = None) -> Metrics:
    return Metrics(likes=likes, reposts=0, replies=0, impressions=impressions)


def test_rate_uses_impressions_when_known() -> None:
    assert interaction_rate(Metrics(likes=8, reposts=1, replies=1, impressions=100)) == 0.1
    assert interaction_rate(Metrics(likes=8, reposts=1, replies=1)) == 10.0


def test_scores_rank_posts_within_each_author_only() -> None:
    ranks = AuthorRanks()
    for likes in (1, 2, 3, 4, 5):
        ranks.add("small", m(likes))
    ranks.add("big", m(1000))
    ranks.add("big", m(5000))
    assert [ranks.score("small", m(x)) for x in (1, 3, 5)] == [0.0, 0.5, 1.0]
    assert ranks.score("big", m(1000)) == 0.0  # a big account's weaker post is weak for that author


def test_ties_share_the_middle_rank_and_a_lone_post_scores_one() -> None:
    ranks = AuthorRanks()
    for likes in (1, 2, 2, 3):
        ranks.add("a", m(likes))
    assert ranks.score("a", m(2)) == 0.5
    ranks.add("solo", m(7))
    assert ranks.score("solo", m(7)) == 1.0
