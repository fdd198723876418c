"""Plan text: its sections as one text, and telling a plan from a copy of the post."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


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


def leak_reason(plan: str, post: str, max_overlap: float, max_copied_words: int) -> str | None:
    """Why `plan` counts as a copy of `post`, or None if it does not."""
    run = longest_copied_run(plan, post)
    if run >= max_copied_words:
        return f"copies {run} consecutive words of the post"
    share = overlap(plan, post)
    if share > max_overlap:
        return f"shares {share:.0%} of the post's word 3-grams (limit {max_overlap:.0%})"
    return None


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
