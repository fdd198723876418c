"""Plan text: its sections as one text, and telling a plan from a copy or a paraphrase of the post."""

from __future__ import annotations

import re
from functools import cache

import snowballstemmer

_WORD = re.compile(r"\w+")
_FUNCTION_WORDS = (
    "a about above after again against all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having he her "
    "here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not "
    "now of off on once only or other our ours ourselves out over own same she should so some such than that the "
    "their theirs them themselves then there these they this those through to too under until up very was we "
    "were what when where which while who whom why will with would you your yours yourself yourselves "
    "ll re ve"
)
_STOP_WORDS = frozenset(_FUNCTION_WORDS.split())
"""English function words (Snowball's list, shortened, and the tails of contractions: "we'll", "I've"):
they say nothing about what a post is about."""


def render_plan(sections: dict[str, str]) -> str:
    """The plan's text: one `Name: text` line per section, in order."""
    return "\n".join(f"{name}: {text}" for name, text in sections.items())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def overlap(plan: str, post: str, n: int = 3) -> float:
    """Share of the post's word n-grams that also occur in the plan (0 when the post has none)."""
    post_grams = _ngrams(words(post), n)
    if not post_grams:
        return 0.0
    return len(post_grams & _ngrams(words(plan), n)) / len(post_grams)


def content_tokens(text: str) -> list[str]:
    """The text's content words in order: lower-cased, stop words, numbers and single letters left out."""
    return [w for w in words(text) if w not in _STOP_WORDS and not w.isdigit() and len(w) > 1]


def content_words(text: str) -> set[str]:
    """The stems of the text's content words."""
    return {_stem(w) for w in content_tokens(text)}


MIN_CONTENT_WORDS = 6
"""Posts with fewer content words are not judged by their share: a plan naming the topic of a
two-word post would name half of it."""


def content_overlap(plan: str, post: str) -> float:
    """Share of the post's content words (by stem) that the plan names: high for a close paraphrase,
    which copies no 3-gram yet lowers the score without being a strategy (0 when the post has none)."""
    post_words = content_words(post)
    if not post_words:
        return 0.0
    return len(post_words & content_words(plan)) / len(post_words)


def longest_copied_run(plan: str, post: str) -> int:
    """The longest run of consecutive post words that appears in the plan."""
    a, b = words(post), words(plan)
    best = 0
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def leak_reason(
    plan: str, post: str, max_overlap: float, max_copied_words: int, max_content_overlap: float
) -> str | None:
    """Why `plan` counts as a copy or a paraphrase of `post`, or None if it does not."""
    run = longest_copied_run(plan, post)
    if run >= max_copied_words:
        return f"copies {run} consecutive words of the post"
    share = overlap(plan, post)
    if share > max_overlap:
        return f"shares {share:.0%} of the post's word 3-grams (limit {max_overlap:.0%})"
    post_words = content_words(post)
    named = len(post_words & content_words(plan)) / len(post_words) if post_words else 0.0
    if named > max_content_overlap and len(post_words) >= MIN_CONTENT_WORDS:
        return f"names {named:.0%} of the post's content words (limit {max_content_overlap:.0%})"
    return None


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@cache
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


_STEMMER = snowballstemmer.stemmer("english")
